"""Read a .tflite flatbuffer without TensorFlow: ops, op counts, tensors, quantization, MACs.

Uses the generated schema module shipped with the `tflite-micro` package (or LiteRT's), so `inspect`
and `convert`'s analysis stay fast. Structural checks (identifier, index ranges, buffer
extents) turn a truncated or corrupted file into BadInput before any C++ code sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploykit.errors import BadInput

_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT8": "int8",
    "UINT8": "uint8", "INT16": "int16", "UINT16": "uint16", "INT32": "int32",
    "UINT32": "uint32", "INT64": "int64", "UINT64": "uint64", "BOOL": "bool",
}


def _schema():
    """The generated TFLite schema reader from tflite-micro, else from LiteRT (which has
    wheels where tflite-micro has none)."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated
    except ImportError:
        from deploykit import extras
        if not extras.available("ai_edge_litert"):
            extras.require("tflite_micro", "reading a .tflite")
        from ai_edge_litert import schema_py_generated
    return schema_py_generated


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class Tensor:
    """One tensor of the main subgraph, as the flatbuffer describes it."""

    index: int
    name: str
    dtype: str
    shape: list[int]
    scales: list[float]
    zero_points: list[int]

    def spec(self) -> dict:
        """The manifest form: {name, dtype, shape, scale, zero_point} (per-tensor)."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "scale": float(self.scales[0]) if self.scales else 0.0,
                "zero_point": int(self.zero_points[0]) if self.zero_points else 0}


@dataclass
class Operator:
    op: str
    inputs: list[int]
    outputs: list[int]
    macs: int


@dataclass
class TfliteModel:
    """What deploykit needs to know about a .tflite: tensors, operators, size."""

    size: int
    tensors: list[Tensor]
    operators: list[Operator]
    input_indices: list[int]
    output_indices: list[int]

    @property
    def inputs(self) -> list[dict]:
        return [self.tensors[i].spec() for i in self.input_indices]

    @property
    def outputs(self) -> list[dict]:
        return [self.tensors[i].spec() for i in self.output_indices]

    def op_table(self) -> list[dict]:
        """[{op, count, macs}] in first-use order."""
        table: dict[str, dict] = {}
        for o in self.operators:
            row = table.setdefault(o.op, {"op": o.op, "count": 0, "macs": 0})
            row["count"] += 1
            row["macs"] += o.macs
        return list(table.values())

    @property
    def macs_total(self) -> int:
        return sum(o.macs for o in self.operators)


def parse(data: bytes, origin: str = "model") -> TfliteModel:
    """Parse and structurally check a .tflite; BadInput if it is not a sound TFLite model."""
    data = bytes(data)
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise BadInput(f"{origin} is not a TFLite flatbuffer (no 'TFL3' identifier); "
                       "give a .tflite written by the TFLite converter")
    _schema()  # a missing package is not a damaged model
    try:
        model = _read(data)
    except BadInput:
        raise
    except Exception as exc:  # the generated reader raises anything on garbage offsets
        raise BadInput(f"{origin} is a truncated or corrupted .tflite ({type(exc).__name__}); "
                       "re-export it with `deploykit convert`") from exc
    return model


def _read(data: bytes) -> TfliteModel:
    s = _schema()
    root = s.Model.GetRootAsModel(data, 0)
    if root.SubgraphsLength() < 1:
        raise ValueError("no subgraphs")
    buffers = [_buffer_size(root.Buffers(i), len(data)) for i in range(root.BuffersLength())]
    codes = [_op_name(s, root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
    g = root.Subgraphs(0)
    tensors = [_tensor(s, g.Tensors(i), i, buffers) for i in range(g.TensorsLength())]
    operators = [_operator(g.Operators(i), codes, tensors) for i in range(g.OperatorsLength())]
    ins = [int(v) for v in g.InputsAsNumpy()] if g.InputsLength() else []
    outs = [int(v) for v in g.OutputsAsNumpy()] if g.OutputsLength() else []
    for idx in ins + outs:
        _check_index(idx, len(tensors), "subgraph input/output")
    return TfliteModel(size=len(data), tensors=tensors, operators=operators,
                       input_indices=ins, output_indices=outs)


def _buffer_size(buf, total: int) -> int:
    if buf is None:
        return 0
    if buf.Offset() > 0:  # stored outside the flatbuffer (models > 2 GB)
        if buf.Offset() + buf.Size() > total:
            raise ValueError("external buffer beyond end of file")
        return int(buf.Size())
    if buf.DataIsNone():
        return 0
    n = buf.DataLength()
    start = buf._tab.Vector(buf._tab.Offset(4))
    if start + n > total:
        raise ValueError("buffer beyond end of file")
    return int(n)


def _op_name(s, code) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    names = _enum_names(s.BuiltinOperator)
    if builtin == s.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode('utf-8', 'replace')}" if custom else "CUSTOM"
    if builtin not in names:
        raise ValueError(f"unknown builtin operator code {builtin}")
    return names[builtin]


def _tensor(s, t, index: int, buffers: list[int]) -> Tensor:
    types = _enum_names(s.TensorType)
    type_name = types.get(t.Type())
    if type_name is None:
        raise ValueError(f"unknown tensor type {t.Type()}")
    _check_index(t.Buffer(), max(len(buffers), 1), "buffer")
    shape = [int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else []
    q = t.Quantization()
    scales, zps = [], []
    if q is not None:
        if q.ScaleLength():
            scales = [float(v) for v in q.ScaleAsNumpy()]
        if q.ZeroPointLength():
            zps = [int(v) for v in q.ZeroPointAsNumpy()]
    name = t.Name()
    return Tensor(index=index, name=name.decode("utf-8", "replace") if name else f"tensor_{index}",
                  dtype=_DTYPES.get(type_name, type_name.lower()), shape=shape, scales=scales,
                  zero_points=zps)


def _operator(o, codes: list[str], tensors: list[Tensor]) -> Operator:
    _check_index(o.OpcodeIndex(), len(codes), "opcode")
    ins = [int(v) for v in o.InputsAsNumpy()] if o.InputsLength() else []
    outs = [int(v) for v in o.OutputsAsNumpy()] if o.OutputsLength() else []
    for idx in ins + outs:
        if idx != -1:
            _check_index(idx, len(tensors), "tensor")
    name = codes[o.OpcodeIndex()]
    return Operator(op=name, inputs=ins, outputs=outs, macs=_macs(name, ins, outs, tensors))


def _check_index(i: int, n: int, what: str) -> None:
    if not 0 <= i < n:
        raise ValueError(f"{what} index {i} out of range 0..{n - 1}")


def _macs(op: str, ins: list[int], outs: list[int], tensors: list[Tensor]) -> int:
    """Multiply-accumulates of one operator; 0 for ops that do no MACs worth counting."""
    if not outs or len(ins) < 2 or ins[1] < 0:
        return 0
    out = int(np.prod(tensors[outs[0]].shape or [1]))
    w = tensors[ins[1]].shape
    if op == "FULLY_CONNECTED" and w:
        return out * int(w[-1])
    if op == "CONV_2D" and len(w) == 4:  # weights [out, h, w, in]
        return out * int(np.prod(w[1:]))
    if op == "CONV_3D" and len(w) == 5:  # weights [d, h, w, in, out]
        return out * int(np.prod(w[:4]))
    if op == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return out * int(w[1] * w[2])
    if op == "TRANSPOSE_CONV" and len(w) == 4 and len(ins) >= 3:
        return int(np.prod(tensors[ins[2]].shape or [1])) * int(np.prod(w[:3]))
    if op == "BATCH_MATMUL":
        a = tensors[ins[0]].shape
        return out * int(a[-1]) if a else 0
    return 0
