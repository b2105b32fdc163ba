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
    input dtype already, or float, then quantized once so both runtimes see the same bytes."""
    from deploykit.model.tflm_host import TflmRunner
    x_model = model_inputs(x, spec_in)
    return TflmRunner(model).predict(x_model), litert_host.predict(model, x_model)


def store_tflm_outputs(outdir, model: bytes, spec_in: dict, x) -> dict:
    """Write TFLM-host's outputs for x (with its inputs) to OUTDIR/STORED_FILE, for hosts
    without tflite-micro; return the manifest's `tflm_reference` entry."""
    from importlib.metadata import version

    from deploykit.atomic import write_bytes
    from deploykit.model.tflm_host import TflmRunner
    x_model = model_inputs(x, spec_in)
    buf = io.BytesIO()
    np.savez(buf, inputs=x_model, outputs=TflmRunner(model).predict(x_model))
    write_bytes(outdir / STORED_FILE, buf.getvalue())
    return {"file": STORED_FILE, "samples": int(len(x_model)), "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            "tflm_version": version("tflite-micro")}


def stored_tflm_outputs(manifest, x_model: np.ndarray) -> np.ndarray | None:
    """TFLM-host outputs `convert` stored, one per row of x_model, or None unless the stored
    file is intact (its sha256) and holds every row's input bytes."""
    entry = manifest.data.get("tflm_reference")
    if not entry:
        return None
    path = manifest.directory / entry["file"]
    try:
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            return None
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            inputs, outputs = npz["inputs"], npz["outputs"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if inputs.dtype != x_model.dtype or len(inputs) != len(outputs):
        return None
    where = {row.tobytes(): i for i, row in enumerate(inputs.reshape(len(inputs), -1))}
    rows = [where.get(row.tobytes()) for row in np.ascontiguousarray(x_model).reshape(len(x_model), -1)]
    return None if None in rows else outputs[np.asarray(rows, dtype=np.int64)]


def reference_predictions(manifest, x, include_float: bool = True) -> dict:
    """Outputs of TFLM-host and LiteRT (in the output dtype) and the float model (float).

    x may be in the input dtype already or float; float inputs are quantized for the
    quantized model and used as is for the float model. The float model (TensorFlow) is
    only loaded when asked for and reachable. A reference this install cannot compute is
    None (TFLM-host: the stored outputs where they cover x).
    """
    from deploykit.model.tflm_host import TflmRunner
    spec = manifest["inputs"][0]
    x = np.asarray(x)
    x_model, model = model_inputs(x, spec), manifest.model_bytes()
    tflm = TflmRunner(model).predict(x_model) if extras.available("tflite_micro") \
        else stored_tflm_outputs(manifest, x_model)
    desktop = litert_host.predict(model, x_model) if extras.available("ai_edge_litert") else None
    result = {"tflm_host": tflm, "desktop": desktop, "float": None}
    if include_float:
        in_model_dtype = x.dtype == np.dtype(spec["dtype"])
        result["float"] = float_predictions(manifest, to_float(x, spec) if in_model_dtype else x)
    return result


def float_predictions(manifest, x_float: np.ndarray):
    """Float model outputs for float inputs, or None when the source model is not Keras/SavedModel."""
    source = manifest.source_path("model")
    fmt = (manifest.data.get("source") or {}).get("model_format")
    if source is None or fmt not in ("keras", "h5", "saved_model") or not source.exists() \
            or not extras.available("tensorflow"):
        return None
    from deploykit.model import tf_backend
    return tf_backend.predict_float(source, fmt, x_float)
