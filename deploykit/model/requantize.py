"""Re-quantize per-channel FULLY_CONNECTED weights per tensor, inside a .tflite.

Why: TF's converter quantizes dense weights per channel by default (TF >= 2.16), but the
TFLM ports boards/ pins (TFLM of 2022 to mid-2024; per-channel FULLY_CONNECTED arrived in
TFLM on 2024-09-27) apply one scale to every channel, so such a model computes wrong
outputs on every real board. A .tflite made elsewhere cannot be re-converted, so its FC
weights are re-quantized here: symmetric int8 with one scale, max|w| / 127 over the whole
dequantized tensor (equal to the largest per-channel scale times its channel's largest
|q| / 127, i.e. no clipping), and the int32/int64 bias re-quantized to input_scale x new
weight scale (the scale TFLM's FC kernel assumes for the bias).

How: the file is patched in place, found through the flatbuffer schema's generated reader
(the one tflite_model uses). Weights and bias keep their byte size; each scale and
zero-point vector keeps its storage and its length prefix becomes 1. So the file keeps its
size, its layout and the converter's 16-byte buffer alignment, and every byte outside those
weights, biases and vectors stays identical (a repack through the object API would move and
re-align every buffer and drop fields a newer schema added).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploykit.errors import BadInput
from deploykit.model import tflite_model

# Field offsets in the schema's vtables (flatbuffer field ids never change).
_TENSOR_BUFFER, _TENSOR_QUANT = 8, 12
_QUANT_SCALE, _QUANT_ZERO_POINT = 8, 10
_BUFFER_DATA = 4
_BIAS_DTYPES: dict[str, type[np.signedinteger[Any]]] = {"INT32": np.int32, "INT64": np.int64}


@dataclass
class _Tensor:
    """Where one tensor's data and quantization vectors live in the file."""

    name: str
    dtype: str
    shape: list[int]
    buffer: int
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int
    scale_at: tuple[int, int] | None       # (first element position, length)
    zero_point_at: tuple[int, int] | None


def per_channel_fc(model: bytes) -> list[dict]:
    """FULLY_CONNECTED ops (any subgraph) whose weights carry several scales:
    [{subgraph, op, weights, channels}]. Empty when every FC weight is per tensor."""
    found, seen = [], set()
    for g, ops, tensors in _subgraphs(bytes(model)):
        for k, ins in ops:
            w = ins[1] if len(ins) > 1 else -1
            if w >= 0 and len(tensors[w].scales) > 1 and (g, w) not in seen:
                seen.add((g, w))
                found.append({"subgraph": g, "op": k, "weights": tensors[w].name,
                              "channels": int(len(tensors[w].scales))})
    return found


def fc_per_tensor(model: bytes, origin: str = "model") -> tuple[bytes, list[dict]]:
    """The model with every per-channel FULLY_CONNECTED weight tensor (and its bias)
    re-quantized per tensor, and what changed: [{weights, channels, old_scale_min,
    old_scale_max, new_scale, max_weight_error}]. BadInput when the file shares those
    tensors' storage in a way a per-tensor rewrite would corrupt."""
    data = bytearray(model)
    changed: list[dict] = []
    done: dict[tuple[int, int, int | None], float] = {}  # (subgraph, weights, bias) -> input scale
    subgraphs = list(_subgraphs(bytes(model)))
    users = _buffer_users(subgraphs)
    for g, ops, tensors in subgraphs:
        for _, ins in ops:
            w = ins[1] if len(ins) > 1 else -1
            if w < 0 or len(tensors[w].scales) <= 1:
                continue
            bias = ins[2] if len(ins) > 2 and ins[2] >= 0 else None
            key = (g, w, bias)
            in_scale = float(tensors[ins[0]].scales[0]) if len(tensors[ins[0]].scales) else 0.0
            if key in done:
                if done[key] != in_scale:
                    raise BadInput(f"{origin}: bias of FULLY_CONNECTED weights {tensors[w].name!r} is shared by ops "
                                   "with different input scales; it cannot be re-quantized per tensor")
                continue
            done[key] = in_scale
            _check_private(origin, subgraphs, users, g, [w] + ([bias] if bias is not None else []))
            changed.append(_requantize(data, bytes(model), g, tensors, w, bias, in_scale, origin))
    return bytes(data), changed


def _requantize(data: bytearray, model: bytes, g: int, tensors: list[_Tensor], w: int, bias: int | None,
                in_scale: float, origin: str) -> dict:
    t = tensors[w]
    if t.dtype != "INT8":
        raise BadInput(f"{origin}: FULLY_CONNECTED weights {t.name!r} are {t.dtype.lower()}, not int8; "
                       "deploykit re-quantizes int8 weights only")
    if np.any(t.zero_points != 0):
        raise BadInput(f"{origin}: FULLY_CONNECTED weights {t.name!r} have non-zero zero points; "
                       "TFLM expects symmetric int8 weights, re-convert the source model")
    start, n = _buffer_at(model, t.buffer, origin, t.name)
    q = np.frombuffer(model, np.int8, n, start).astype(np.float64)
    axis = t.quantized_dimension
    if len(t.shape) <= axis or t.shape[axis] != len(t.scales) or int(np.prod(t.shape)) != n:
        raise BadInput(f"{origin}: FULLY_CONNECTED weights {t.name!r} have {len(t.scales)} scales that do not "
                       f"match shape {t.shape} along dimension {axis}; the file is inconsistent")
    per = t.scales.astype(np.float64).reshape([-1 if d == axis else 1 for d in range(len(t.shape))])
    w_float = q.reshape(t.shape) * per
    peak = float(np.abs(w_float).max())
    new_scale = np.float32(peak / 127.0 if peak > 0 else float(t.scales.max()))
    q_new = np.clip(_round(w_float / np.float64(new_scale)), -127, 127).astype(np.int8)
    data[start:start + n] = q_new.tobytes()
    _set_per_tensor(data, t, new_scale)
    if bias is not None:
        _requantize_bias(data, model, tensors[bias], np.float32(in_scale * new_scale), origin)
    return {"subgraph": g, "weights": t.name, "channels": int(len(t.scales)),
            "old_scale_min": float(t.scales.min()), "old_scale_max": float(t.scales.max()),
            "new_scale": float(new_scale),
            "max_weight_error": float(np.abs(q_new.astype(np.float64) * np.float64(new_scale) - w_float).max())}


def _requantize_bias(data: bytearray, model: bytes, b: _Tensor, new_scale: np.float32, origin: str) -> None:
    """Bias in the float domain, then to integers at input_scale x new weight scale."""
    dtype = _BIAS_DTYPES.get(b.dtype)
    if dtype is None:
        raise BadInput(f"{origin}: FULLY_CONNECTED bias {b.name!r} is {b.dtype.lower()}, not int32 or int64")
    start, n = _buffer_at(model, b.buffer, origin, b.name)
    values = np.frombuffer(model, dtype, n // np.dtype(dtype).itemsize, start).astype(np.float64)
    scales = b.scales.astype(np.float64) if len(b.scales) in (1, len(values)) else None
    if scales is None:
        raise BadInput(f"{origin}: FULLY_CONNECTED bias {b.name!r} has {len(b.scales)} scales for "
                       f"{len(values)} values; the file is inconsistent")
    info = np.iinfo(dtype)
    new = np.clip(_round(values * scales / np.float64(new_scale)), info.min, info.max).astype(dtype)
    data[start:start + n] = new.tobytes()
    _set_per_tensor(data, b, new_scale)


def _round(v: np.ndarray) -> np.ndarray:
    """Half away from zero, as TFLite's quantizer rounds (std::round), not numpy's half to even."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _set_per_tensor(data: bytearray, t: _Tensor, scale: np.float32) -> None:
    """One scale, zero point 0: element 0 rewritten, the vectors' length prefixes set to 1."""
    assert t.scale_at is not None  # only quantized tensors (with scales) are rewritten
    pos, _ = t.scale_at
    struct.pack_into("<If", data, pos - 4, 1, float(scale))
    if t.zero_point_at is not None:
        struct.pack_into("<Iq", data, t.zero_point_at[0] - 4, 1, 0)


def _check_private(origin: str, subgraphs, users: dict, g: int, indices: list[int]) -> None:
    """Refuse when a weight/bias buffer or quantization vector is also another tensor's."""
    tensors = subgraphs[g][2]
    for i in indices:
        t = tensors[i]
        others = [u for u in users.get(("buffer", t.buffer), []) if u != (g, i)]
        for at in (t.scale_at, t.zero_point_at):
            if at is not None:
                others += [u for u in users.get(("vector", at[0]), []) if u != (g, i)]
        if others:
            raise BadInput(f"{origin}: FULLY_CONNECTED tensor {t.name!r} shares its storage with another tensor; "
                           "deploykit cannot re-quantize it per tensor in place, re-convert the source model")


def _buffer_users(subgraphs) -> dict:
    users: dict = {}
    for g, _, tensors in subgraphs:
        for i, t in enumerate(tensors):
            if t.buffer:
                users.setdefault(("buffer", t.buffer), []).append((g, i))
            for at in (t.scale_at, t.zero_point_at):
                if at is not None:
                    users.setdefault(("vector", at[0]), []).append((g, i))
    return users


def _buffer_at(model: bytes, index: int, origin: str, name: str) -> tuple[int, int]:
    root = tflite_model._schema().Model.GetRootAsModel(model, 0)
    buf = root.Buffers(index) if 0 < index < root.BuffersLength() else None
    o = buf._tab.Offset(_BUFFER_DATA) if buf is not None else 0
    if buf is None or not o or buf.Offset() > 0:  # no buffer: o is 0
        raise BadInput(f"{origin}: FULLY_CONNECTED tensor {name!r} has no constant data in the file; "
                       "only constant weights can be re-quantized")
    return buf._tab.Vector(o), buf._tab.VectorLen(o)


def _subgraphs(model: bytes):
    """(subgraph index, [(op index, inputs)] of FULLY_CONNECTED ops, [_Tensor]) per subgraph."""
    tflite_model.parse(model)  # structural checks first: BadInput on a broken file
    s = tflite_model._schema()
    root = s.Model.GetRootAsModel(model, 0)
    fc = [i for i in range(root.OperatorCodesLength())
          if max(root.OperatorCodes(i).BuiltinCode(), root.OperatorCodes(i).DeprecatedBuiltinCode())
          == s.BuiltinOperator.FULLY_CONNECTED]
    types = tflite_model._enum_names(s.TensorType)
    for g in range(root.SubgraphsLength()):
        sub = root.Subgraphs(g)
        tensors = [_tensor(sub.Tensors(i), i, types) for i in range(sub.TensorsLength())]
        ops = [(k, [int(v) for v in op.InputsAsNumpy()]) for k in range(sub.OperatorsLength())
               for op in [sub.Operators(k)] if op.OpcodeIndex() in fc and op.InputsLength()]
        yield g, [(k, ins) for k, ins in ops if all(-1 <= i < len(tensors) for i in ins)], tensors


def _tensor(t, index: int, types: dict) -> _Tensor:
    q = t.Quantization()
    scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0, np.float32)
    name = t.Name()
    return _Tensor(name=name.decode("utf-8", "replace") if name else f"tensor_{index}",
                   dtype=types.get(t.Type(), "?"), shape=[int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                   buffer=int(t.Buffer()), scales=np.asarray(scales, np.float32),
                   zero_points=np.asarray(q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else [0]),
                   quantized_dimension=int(q.QuantizedDimension()) if q is not None else 0,
                   scale_at=_vector_at(q, _QUANT_SCALE), zero_point_at=_vector_at(q, _QUANT_ZERO_POINT))


def _vector_at(table, field: int) -> tuple[int, int] | None:
    if table is None:
        return None
    o = table._tab.Offset(field)
    return (table._tab.Vector(o), table._tab.VectorLen(o)) if o else None


def before_after(before: bytes, after: bytes, parsed, test) -> dict:
    """The task's figure for the per-channel model and its per-tensor rewrite on the test
    data, both run by TFLM on the host (which honours per-channel FC, so `before` is what
    the model was meant to compute), and how far the two outputs agree. Without labels the
    agreement is the only figure: a .tflite brings no float model to compare with."""
    from deploykit.model import metrics
    from deploykit.model.datafiles import input_arrays
    from deploykit.model.io_order import signature_names
    from deploykit.model.quantization import to_float, to_input_dtype
    from deploykit.model.reference import agreement
    from deploykit.model.tflm_host import TflmRunner
    spec_out = parsed.outputs[0]
    names = signature_names(after)   # every input's array (x<i>, tensor or signature name); figures of output 0
    xs = [to_input_dtype(x.astype(np.float32), spec) for x, spec in
          zip(input_arrays(test, parsed.inputs, [names.get(i) for i in parsed.input_indices]), parsed.inputs,
              strict=True)]
    x = xs[0]
    outs = {k: TflmRunner(m).predict_all(xs)[0] for k, m in (("before", before), ("after", after))}
    task = metrics.infer_task(test.y, spec_out["shape"])
    result: dict[str, Any] = {"task": task, "samples": int(len(x)), "runtime": "tflm_host",
              "after_vs_before": agreement(outs["after"], outs["before"], spec_out["scale"], spec_out["zero_point"])}
    for k, out in outs.items():
        pred = to_float(out, spec_out)
        if task == "classification":
            result[k] = {"accuracy": float((pred.reshape(len(pred), -1).argmax(1) == metrics.labels(test.y)).mean())}
        elif task == "regression":
            result[k] = metrics.errors(pred, test.y)
    return result
