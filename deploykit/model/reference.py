"""Desktop references for the quantized model and how far two sets of outputs agree.

The harness reuses this: TFLM-host is what a board running TFLM's reference kernels must
match exactly; LiteRT (desktop) and the float model show the cost of the kernels and of
quantization.
"""

from __future__ import annotations

import numpy as np

from deploykit.model import litert_host
from deploykit.model.quantization import dequantize, to_float, to_input_dtype


def agreement(a: np.ndarray, b: np.ndarray, scale: float, zero_point: int) -> dict:
    """Exact-match fraction, int8-step and dequantized differences between two outputs.

    For quantized (integer) outputs steps count quantization steps; for float outputs the
    step figures are None and the rest is computed on the floats.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare outputs of shapes {a.shape} and {b.shape}")
    quantized = np.issubdtype(a.dtype, np.integer) and scale
    rows = max(len(a), 1)
    if quantized:
        steps = np.abs(a.astype(np.int64) - b.astype(np.int64)).reshape(rows, -1)
        fa, fb = dequantize(a, scale, zero_point), dequantize(b, scale, zero_point)
        stats = {"max_abs_steps": int(steps.max(initial=0)), "mean_abs_steps": float(steps.mean())}
    else:
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        stats = {"max_abs_steps": None, "mean_abs_steps": None}
    fa, fb = fa.reshape(rows, -1).astype(np.float64), fb.reshape(rows, -1).astype(np.float64)
    exact = (a.reshape(rows, -1) == b.reshape(rows, -1)).all(axis=1)
    diff = fa - fb
    return {"samples": int(len(a)), "exact_fraction": float(exact.mean()), **stats,
            "mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff ** 2).mean())),
            "cosine": _cosine(fa.ravel(), fb.ravel())}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def quantized_outputs(model: bytes, spec_in: dict, x) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of TFLM-host and LiteRT (desktop) for the same inputs: x in the model's
    input dtype already, or float, then quantized once so both runtimes see the same bytes."""
    from deploykit.model.tflm_host import TflmRunner
    x = np.asarray(x)
    x_model = x if x.dtype == np.dtype(spec_in["dtype"]) else to_input_dtype(x, spec_in)
    return TflmRunner(model).predict(x_model), litert_host.predict(model, x_model)


def reference_predictions(manifest, x, include_float: bool = True) -> dict:
    """Outputs of TFLM-host and LiteRT (in the output dtype) and the float model (float).

    x may be in the input dtype already or float; float inputs are quantized for the
    quantized model and used as is for the float model. The float model (TensorFlow) is
    only loaded when asked for and reachable.
    """
    spec = manifest["inputs"][0]
    x = np.asarray(x)
    tflm, desktop = quantized_outputs(manifest.model_bytes(), spec, x)
    result = {"tflm_host": tflm, "desktop": desktop, "float": None}
    if include_float:
        in_model_dtype = x.dtype == np.dtype(spec["dtype"])
        result["float"] = float_predictions(manifest, to_float(x, spec) if in_model_dtype else x)
    return result


def float_predictions(manifest, x_float: np.ndarray):
    """Float model outputs for float inputs, or None when the source model is not Keras/SavedModel."""
    source = manifest.source_path("model")
    fmt = (manifest.data.get("source") or {}).get("model_format")
    if source is None or fmt not in ("keras", "h5", "saved_model") or not source.exists():
        return None
    from deploykit.model import tf_backend
    return tf_backend.predict_float(source, fmt, x_float)
