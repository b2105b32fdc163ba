"""Affine int8/int16 quantization exactly as TFLite does it, in plain numpy.

Used wherever float data meets a quantized tensor: the harness quantizes test inputs,
reports dequantize outputs. TFLite rounds half away from zero (std::round), not to even.
"""

from __future__ import annotations

import numpy as np

from deploykit.errors import BadInput


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Return round(x / scale) + zero_point, rounded half away from zero, clamped to dtype."""
    dtype = np.dtype(dtype)
    if scale <= 0:
        raise BadInput(f"quantization scale must be positive, got {scale}; re-run `deploykit convert`")
    scaled = np.asarray(x, dtype=np.float64) / float(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    info = np.iinfo(dtype)
    return np.clip(rounded + int(zero_point), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Return (q - zero_point) * scale as float32."""
    return ((np.asarray(q, dtype=np.int64) - int(zero_point)) * float(scale)).astype(np.float32)


def to_input_dtype(x: np.ndarray, spec: dict) -> np.ndarray:
    """Bring float data into a tensor's dtype: quantize for integer tensors, cast otherwise."""
    dtype = np.dtype(spec["dtype"])
    if np.issubdtype(dtype, np.integer) and spec.get("scale"):
        return quantize(x, spec["scale"], spec["zero_point"], dtype)
    return np.asarray(x).astype(dtype)


def to_float(y: np.ndarray, spec: dict) -> np.ndarray:
    """Bring tensor data back to float: dequantize integer tensors, cast otherwise."""
    if np.issubdtype(np.dtype(spec["dtype"]), np.integer) and spec.get("scale"):
        return dequantize(y, spec["scale"], spec["zero_point"])
    return np.asarray(y, dtype=np.float32)
