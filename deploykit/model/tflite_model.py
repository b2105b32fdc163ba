"""Read a .tflite flatbuffer without TensorFlow: ops, op counts, tensors, quantization, MACs.

Every subgraph is read (`TfliteModel.subgraphs`); the main one's tensors and operators stay
`tensors` / `operators`. Each operator also carries what a latency model needs: its dtype,
output elements, kernel window and input channels, and for WHILE / IF / CALL_ONCE the
operators of the subgraphs it runs (`branches`) with a WHILE's static trip count.

Uses the generated schema module shipped with the `tflite-micro` package (or LiteRT's), so `inspect`
and `convert`'s analysis stay fast. Structural checks (identifier, index ranges, buffer
extents) turn a truncated or corrupted file into BadInput before any C++ code sees it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

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


@functools.cache
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
    values: list[int] | None = None   # a small constant int tensor's values (loop bounds)
    constant: bool = False       # has data in the flatbuffer (weights): TFLM never plans it
    variable: bool = False       # is_variable (state): allocated once, outside the plan

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
    dtype: str = ""              # the first input's dtype (the activations), "" if none
    out_elems: int = 0           # elements of the first output
    in_elems: int = 0            # elements of the first input
    kernel: tuple[int, int] = (1, 1)   # conv/pool window (h, w); (1, 1) otherwise
    in_channels: int = 0         # innermost dimension of the first input
    subgraph: int = 0            # the subgraph it belongs to
    branches: dict = field(default_factory=dict)   # "cond"/"body"/"then"/"else"/"init" -> [Operator]
    trips: int | None = None     # a WHILE's static trip count, None if not found
    stride: tuple[int, int] = (1, 1)     # conv/pool stride (h, w)
    dilation: tuple[int, int] = (1, 1)   # conv dilation (h, w)
    padding: str = "VALID"               # conv/pool padding: SAME or VALID

    @property
    def macs_per_output(self) -> float:
        return self.macs / self.out_elems if self.out_elems else 0.0


@dataclass
class Subgraph:
    """One subgraph: its tensors and operators (operators already carry their branches)."""

    index: int
    name: str
    tensors: list[Tensor]
    operators: list[Operator]
    input_indices: list[int]
    output_indices: list[int]


@dataclass
class TfliteModel:
    """What deploykit needs to know about a .tflite: tensors, operators, size."""

    size: int
    tensors: list[Tensor]
    operators: list[Operator]
    input_indices: list[int]
    output_indices: list[int]
    subgraphs: list[Subgraph] = field(default_factory=list)
    origin: str = "model"   # what parse() was told the bytes are (a path), for messages

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
    model.origin = origin
    return model


def _read(data: bytes) -> TfliteModel:
    s = _schema()
    root = s.Model.GetRootAsModel(data, 0)
    if root.SubgraphsLength() < 1:
        raise ValueError("no subgraphs")
    buffers = [_buffer_size(root.Buffers(i), len(data)) for i in range(root.BuffersLength())]
    codes = [_op_name(s, root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
    graphs = [_subgraph(s, root, k, codes, buffers) for k in range(root.SubgraphsLength())]
    _link_branches(graphs)
    main = graphs[0]
    return TfliteModel(size=len(data), tensors=main.tensors, operators=main.operators,
                       input_indices=main.input_indices, output_indices=main.output_indices,
                       subgraphs=graphs)


def _subgraph(s, root, k: int, codes: list[str], buffers: list[int]) -> Subgraph:
    g = root.Subgraphs(k)
    tensors = [_tensor(s, g.Tensors(i), i, buffers, root) for i in range(g.TensorsLength())]
    operators = []
    for i in range(g.OperatorsLength()):
        o = g.Operators(i)
        op = _operator(o, codes, tensors)
        op.subgraph = k
        op.kernel, op.branches = _options(s, o, op, tensors), _branch_indices(s, o)
        _window(s, o, op)
        operators.append(op)
    ins = [int(v) for v in g.InputsAsNumpy()] if g.InputsLength() else []
    outs = [int(v) for v in g.OutputsAsNumpy()] if g.OutputsLength() else []
    for idx in ins + outs:
        _check_index(idx, len(tensors), "subgraph input/output")
    name = g.Name()
    return Subgraph(k, name.decode("utf-8", "replace") if name else f"subgraph_{k}", tensors,
                    operators, ins, outs)


def _options(s, o, op: Operator, tensors: list[Tensor]) -> tuple[int, int]:
    """The (h, w) window of a conv or pool; (1, 1) for anything else."""
    if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D") and o.BuiltinOptions() is not None:
        opt = s.Pool2DOptions()
        table = o.BuiltinOptions()
        opt.Init(table.Bytes, table.Pos)
        return int(opt.FilterHeight()), int(opt.FilterWidth())
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and len(op.inputs) > 1 and op.inputs[1] >= 0:
        w = tensors[op.inputs[1]].shape
        return (int(w[1]), int(w[2])) if len(w) == 4 else (1, 1)
    return 1, 1


_WINDOW_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                   "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
                   "L2_POOL_2D": "Pool2DOptions"}


def _window(s, o, op: Operator) -> None:
    """Stride, dilation and padding of a conv or pool (the arena projection sizes CMSIS-NN's
    scratch buffers from them)."""
    name = _WINDOW_OPTIONS.get(op.op)
    if name is None or o.BuiltinOptions() is None:
        return
    opt = getattr(s, name)()
    table = o.BuiltinOptions()
    opt.Init(table.Bytes, table.Pos)
    op.stride = (int(opt.StrideH()), int(opt.StrideW()))
    if hasattr(opt, "DilationHFactor"):
        op.dilation = (int(opt.DilationHFactor()), int(opt.DilationWFactor()))
    op.padding = "SAME" if int(opt.Padding()) == s.Padding.SAME else "VALID"


_BRANCH_OPTIONS = {   # op -> (options class, {branch: accessor})
    "WHILE": ("WhileOptions", {"cond": "CondSubgraphIndex", "body": "BodySubgraphIndex"}),
    "IF": ("IfOptions", {"then": "ThenSubgraphIndex", "else": "ElseSubgraphIndex"}),
    "CALL_ONCE": ("CallOnceOptions", {"init": "InitSubgraphIndex"}),
}


def _branch_indices(s, o) -> dict:
    """{branch: subgraph index} of a control-flow operator (resolved to operators later)."""
    names = _enum_names(s.BuiltinOptions)
    kind = names.get(o.BuiltinOptionsType())
    for cls_name, accessors in _BRANCH_OPTIONS.values():
        if kind == cls_name and o.BuiltinOptions() is not None:
            opt = getattr(s, cls_name)()
            table = o.BuiltinOptions()
            opt.Init(table.Bytes, table.Pos)
            return {b: int(getattr(opt, a)()) for b, a in accessors.items()}
    return {}


def _link_branches(graphs: list[Subgraph]) -> None:
    """Replace branch subgraph indices by those subgraphs' operator lists; find WHILE trips."""
    for g in graphs:
        for op in g.operators:
            for name, k in list(op.branches.items()):
                _check_index(k, len(graphs), f"{op.op} {name} subgraph")
                op.branches[name] = graphs[k].operators
            if op.op == "WHILE" and "cond" in op.branches:
                cond = _branch_graph(graphs, op.branches["cond"])
                op.trips = while_trips(op, g, cond) if cond is not None else None


def _branch_graph(graphs: list[Subgraph], operators: list[Operator]) -> Subgraph | None:
    return next((g for g in graphs if g.operators is operators), None)


_COMPARE = {"LESS": 0, "LESS_EQUAL": 1, "GREATER": 0, "GREATER_EQUAL": 1, "NOT_EQUAL": 0}


def while_trips(op: Operator, parent: Subgraph, cond: Subgraph) -> int | None:
    """A WHILE's trip count when its condition compares a counter with a constant bound.

    TFLite's converter writes `counter < bound` (bound a constant in the condition or a
    constant passed in by the WHILE); the counter starts at the WHILE's constant input (0
    where not constant). The smallest bound found wins; None when there is none."""
    def value(idx: int) -> int | None:
        t = cond.tensors[idx]
        if t.values:
            return int(t.values[0])
        if idx in cond.input_indices:   # passed in: look at the WHILE's input in the parent
            pos = cond.input_indices.index(idx)
            if pos < len(op.inputs) and op.inputs[pos] >= 0:
                src = parent.tensors[op.inputs[pos]]
                return int(src.values[0]) if src.values else None
        return None

    found = []
    for c in cond.operators:
        if c.op not in _COMPARE or len(c.inputs) < 2:
            continue
        a, b = c.inputs[:2]
        if c.op.startswith("GREATER"):
            a, b = b, a             # bound > counter
        bound = value(b)
        if bound is None:
            continue
        start = value(a) or 0
        found.append(max(bound - start + _COMPARE[c.op], 0))
    return min(found) if found else None


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


def _tensor(s, t, index: int, buffers: list[int], root=None) -> Tensor:
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
    dtype = _DTYPES.get(type_name, type_name.lower())
    return Tensor(index=index, name=name.decode("utf-8", "replace") if name else f"tensor_{index}",
                  dtype=dtype, shape=shape, scales=scales, zero_points=zps,
                  values=_small_ints(root, t.Buffer(), dtype, buffers) if root is not None else None,
                  constant=t.Buffer() > 0 and buffers[t.Buffer()] > 0, variable=bool(t.IsVariable()))


def _small_ints(root, buffer: int, dtype: str, sizes: list[int]) -> list[int] | None:
    """The values of a constant int32/int64 tensor of at most 8 elements (loop bounds)."""
    if dtype not in ("int32", "int64") or buffer <= 0 or not 0 < sizes[buffer] <= 64:
        return None
    buf = root.Buffers(buffer)
    if buf is None or buf.Offset() > 0 or buf.DataIsNone():
        return None
    raw = buf.DataAsNumpy().tobytes()
    return [int(v) for v in np.frombuffer(raw, dtype="<i4" if dtype == "int32" else "<i8")]


def _operator(o, codes: list[str], tensors: list[Tensor]) -> Operator:
    _check_index(o.OpcodeIndex(), len(codes), "opcode")
    ins = [int(v) for v in o.InputsAsNumpy()] if o.InputsLength() else []
    outs = [int(v) for v in o.OutputsAsNumpy()] if o.OutputsLength() else []
    for idx in ins + outs:
        if idx != -1:
            _check_index(idx, len(tensors), "tensor")
    name = codes[o.OpcodeIndex()]
    first_in = tensors[ins[0]] if ins and ins[0] >= 0 else None
    first_out = tensors[outs[0]] if outs and outs[0] >= 0 else None
    return Operator(op=name, inputs=ins, outputs=outs, macs=_macs(name, ins, outs, tensors),
                    dtype=first_in.dtype if first_in else (first_out.dtype if first_out else ""),
                    out_elems=_elems(first_out), in_elems=_elems(first_in),
                    in_channels=int(first_in.shape[-1]) if first_in and first_in.shape else 0)


def _elems(t: Tensor | None) -> int:
    if t is None:
        return 0
    return int(np.prod([max(int(d), 1) for d in t.shape])) if t.shape else 1   # -1 (dynamic) counted as 1


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
    if op in _RECURRENT:
        return _recurrent_macs(op, ins, out, tensors)
    if op == "BATCH_MATMUL":
        a = tensors[ins[0]].shape
        return out * int(a[-1]) if a else 0
    return 0


# Recurrent ops: (weight input positions, recurrent weight positions, projection position)
_RECURRENT = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ((1, 2, 3, 4), (5, 6, 7, 8), 16),
    "LSTM": ((1, 2, 3, 4), (5, 6, 7, 8), 16),
    "UNIDIRECTIONAL_SEQUENCE_RNN": ((1,), (2,), None),
    "RNN": ((1,), (2,), None),
}


def _recurrent_macs(op: str, ins: list[int], out: int, tensors: list[Tensor]) -> int:
    """Every step multiplies the input and the previous output by each gate's weights."""
    gates, recurrent, projection = _RECURRENT[op]
    in_shape = tensors[ins[0]].shape  # [batch, time, n_input] (or time-major, or [batch, n_input])
    steps = int(np.prod(in_shape[:-1])) if in_shape else 1
    per_step = 0
    for pos in (*gates, *recurrent, *((projection,) if projection is not None else ())):
        if pos < len(ins) and ins[pos] >= 0:
            per_step += int(np.prod(tensors[ins[pos]].shape or [0]))
    return steps * per_step
