"""Desktop references for the quantized model and how far two sets of outputs agree.

The harness reuses this: TFLM-host is what a board running TFLM's reference kernels must
match exactly; LiteRT (desktop) and the float model show the cost of the kernels and of
quantization. Each reference is optional in the light install: where the tflite-micro
wheel is absent (it exists for x86-64 Linux only), the TFLM-host outputs `convert` stored
beside the manifest for its test data (STORED_FILE, with the TFLM version) stand in, for
every sample whose input bytes they hold; LiteRT and the float model are simply left out.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import TypedDict

import numpy as np

from deploykit import extras
from deploykit.errors import BadInput
from deploykit.model import litert_host
from deploykit.model.quantization import dequantize, to_float, to_input_dtype

STORED_FILE = "tflm_reference.npz"


class Agreement(TypedDict):
    """How far one model's outputs are from another's: a row of the reports' agreement tables.

    The step figures are None for float outputs (there are no quantization steps to count).
    """

    samples: int
    exact_fraction: float
    max_abs_steps: int | None
    mean_abs_steps: float | None
    mae: float
    rmse: float
    cosine: float


def agreement(a: np.ndarray, b: np.ndarray, scale: float, zero_point: int) -> Agreement:
    """Exact-match fraction, int8-step and dequantized differences between two outputs.

    For quantized (integer) outputs steps count quantization steps; for float outputs the
    step figures are None and the rest is computed on the floats.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise BadInput(f"cannot compare outputs of shapes {a.shape} and {b.shape}; the reference and the "
                       "model disagree on the output shape")
    quantized = np.issubdtype(a.dtype, np.integer) and scale
    rows = max(len(a), 1)
    if quantized:
        steps = np.abs(a.astype(np.int64) - b.astype(np.int64)).reshape(rows, -1)
        fa, fb = dequantize(a, scale, zero_point), dequantize(b, scale, zero_point)
        max_steps: int | None = int(steps.max(initial=0))
        mean_steps: float | None = float(steps.mean())
    else:
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        max_steps = mean_steps = None
    fa, fb = fa.reshape(rows, -1).astype(np.float64), fb.reshape(rows, -1).astype(np.float64)
    exact = (a.reshape(rows, -1) == b.reshape(rows, -1)).all(axis=1)
    diff = fa - fb
    return {"samples": int(len(a)), "exact_fraction": float(exact.mean()),
            "max_abs_steps": max_steps, "mean_abs_steps": mean_steps,
            "mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff ** 2).mean())),
            "cosine": _cosine(fa.ravel(), fb.ravel())}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def model_inputs(x, spec_in: dict) -> np.ndarray:
    """x in the model input's dtype: as is when it already is, else quantized (integer
    tensors with a scale) or cast, as TFLite does. The harness and `convert` share it, so
    stored outputs are found again by their input bytes."""
    x = np.asarray(x)
    if x.dtype == np.dtype(spec_in["dtype"]):
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(to_input_dtype(x, spec_in))


def quantized_outputs(model: bytes, spec_in: dict, x) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of TFLM-host and LiteRT (desktop) for the same inputs: x in the model's
    input dtype already, or float, then quantized once so both runtimes see the same bytes.
    A single-input model's first output; quantized_outputs_all for every input and output."""
    tflm, litert = quantized_outputs_all(model, [spec_in], [x])
    return tflm[0], litert[0]


def quantized_outputs_all(model: bytes, specs_in: list[dict], xs: list) -> tuple[list, list]:
    """TFLM-host's and LiteRT's outputs (one array per output tensor) for one array per input."""
    from deploykit.model.tflm_host import TflmRunner
    xs_model = [model_inputs(x, spec) for x, spec in zip(xs, specs_in, strict=True)]
    return TflmRunner(model).predict_all(xs_model), litert_host.predict_all(model, xs_model)


def _as_list(xs) -> list:
    return list(xs) if isinstance(xs, list | tuple) else [xs]


def store_tflm_outputs(outdir, model: bytes, specs_in, xs) -> dict:
    """Write TFLM-host's outputs for the inputs xs (with them) to OUTDIR/STORED_FILE, for
    hosts without tflite-micro; return the manifest's `tflm_reference` entry. specs_in/xs:
    one spec and array per input (a single one for a single-input model). The file holds
    `inputs`/`outputs` (the first input and output) and input_<k>/output_<k> for the rest."""
    from importlib.metadata import version

    from deploykit.atomic import write_bytes
    from deploykit.model.tflm_host import TflmRunner
    xs_model = [model_inputs(x, spec) for x, spec in zip(_as_list(xs), _as_list(specs_in), strict=True)]
    outs = TflmRunner(model).predict_all(xs_model)
    arrays = {"inputs": xs_model[0], "outputs": outs[0]}
    arrays.update({f"input_{k}": a for k, a in enumerate(xs_model) if k})
    arrays.update({f"output_{k}": a for k, a in enumerate(outs) if k})
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types the first keyword
    write_bytes(outdir / STORED_FILE, buf.getvalue())
    return {"file": STORED_FILE, "samples": int(len(xs_model[0])), "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            "tflm_version": version("tflite-micro")}


def stored_tflm_outputs(manifest, x_model):
    """TFLM-host outputs `convert` stored, one per sample, or None unless the stored file is
    intact (its sha256) and holds every sample's input bytes. x_model: the first input's
    array (the first output comes back), or a list of one array per input (a list of one
    array per output comes back)."""
    several = isinstance(x_model, list | tuple)
    xs = [np.asarray(x) for x in _as_list(x_model)]
    stored = _read_stored(manifest)
    if stored is None:
        return None
    found = [stored.get("inputs" if k == 0 else f"input_{k}") for k in range(len(xs))]
    outs = [stored[key] for key in sorted(stored, key=_output_position) if _output_position(key) >= 0]
    ins = [a for a in found if a is not None and len(a) == len(outs[0])]
    if len(ins) != len(xs) or any(a.dtype != x.dtype for a, x in zip(ins, xs, strict=True)):
        return None
    where = {_row_key(ins, i): i for i in range(len(outs[0]))}
    rows = [where.get(_row_key(xs, i)) for i in range(len(xs[0]))]
    if None in rows:
        return None
    picked = [o[np.asarray(rows, dtype=np.int64)] for o in outs]
    return picked if several else picked[0]


def _read_stored(manifest) -> dict | None:
    entry = manifest.data.get("tflm_reference")
    if not entry:
        return None
    path = manifest.directory / entry["file"]
    try:
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            return None
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return arrays if "inputs" in arrays and "outputs" in arrays else None


def _output_position(key: str) -> int:
    """0 for `outputs`, k for `output_<k>`, -1 for inputs."""
    if key == "outputs":
        return 0
    return int(key[7:]) if key.startswith("output_") and key[7:].isdigit() else -1


def _row_key(arrays: list[np.ndarray], i: int) -> bytes:
    """Sample i's bytes over every input."""
    return b"".join(np.ascontiguousarray(a[i]).tobytes() for a in arrays)


def reference_predictions(manifest, x, include_float: bool = True) -> dict:
    """Outputs of TFLM-host and LiteRT (in the output dtype) and the float model (float).

    x: one array per input (a list) or the array of a single-input model, each in its
    input dtype already or float; float inputs are quantized for the quantized model and
    used as is for the float model. The float model (TensorFlow) is only loaded when asked
    for and reachable. A reference this install cannot compute is None (TFLM-host: the
    stored outputs where they cover x). The top-level entries are the first output's;
    `per_output` holds {tflm_host, desktop, float} for every output, in order.
    """
    from deploykit.model.tflm_host import TflmRunner
    specs = manifest["inputs"]
    xs = [np.asarray(a) for a in _as_list(x)]
    model = manifest.model_bytes()
    xs_model = [model_inputs(a, spec) for a, spec in zip(xs, specs, strict=True)]
    tflm = TflmRunner(model).predict_all(xs_model) if extras.available("tflite_micro") \
        else stored_tflm_outputs(manifest, xs_model)
    desktop = litert_host.predict_all(model, xs_model) if extras.available("ai_edge_litert") else None
    floats = None
    if include_float:
        floats = float_predictions_all(manifest, [to_float(a, spec) if a.dtype == np.dtype(spec["dtype"]) else a
                                                  for a, spec in zip(xs, specs, strict=True)])
    per_output = [{"tflm_host": tflm[k] if tflm is not None else None,
                   "desktop": desktop[k] if desktop is not None else None,
                   "float": floats[k] if floats is not None else None} for k in range(len(manifest["outputs"]))]
    return {**per_output[0], "per_output": per_output}


def float_predictions(manifest, x_float: np.ndarray):
    """Float model outputs (the first output) for float inputs, or None when the source
    model is not Keras/SavedModel."""
    found = float_predictions_all(manifest, [x_float])
    return found[0] if found is not None else None


def float_predictions_all(manifest, xs_float: list) -> list | None:
    """Float model outputs, one array per output, or None when the source model is not
    Keras/SavedModel or cannot be reached."""
    source = manifest.source_path("model")
    fmt = (manifest.data.get("source") or {}).get("model_format")
    if source is None or fmt not in ("keras", "h5", "saved_model") or not source.exists() \
            or not extras.available("tensorflow"):
        return None
    from deploykit.model import tf_backend
    return tf_backend.predict_float_all(source, fmt, list(xs_float))
