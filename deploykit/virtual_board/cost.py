"""The virtual board's latency model: cycles per operator, summed over one inference.

An operator costs the board's per-operator overhead (`op_overhead_cycles`: Invoke's
dispatch and the kernel's prologue) plus its work, which depends on what it is:
- MAC operators (conv, depthwise, fully connected, matmul, transpose conv, LSTM/RNN):
  MACs × cycles per MAC + output elements × cycles per output. For int8 the cycles per
  MAC are the board file's `cycles_per_mac` (its kernels' figure for a plain conv) times
  a factor for the kernel family and the shape (a 1×1 conv, a 3×3 depthwise, a first
  layer with few input channels...); int16 and float32 run other kernels (float32 always
  TFLM's reference ones, with soft float on a core without an FPU).
- element-wise and data-movement operators: cycles per element by operator group.
- WHILE: condition and body per trip plus the last condition; IF: the costlier branch;
  CALL_ONCE: nothing after the first Invoke.
Coefficients and their sources are in cost_table.py; the kernel family comes from the
board's `kernels` key, else its arena class; the core's SIMD/FPU from its `core`.

`op_cycles(op, board)` is one operator of a parsed model (deploykit.model.tflite_model),
`breakdown(model, board)` every operator of the main subgraph with its cycles, and the
inference total is their sum. A board with a cycle counter reports microseconds derived
from cycles; a `micros` board measures microseconds and derives cycles from them
(docs/protocol.md, RESULT), so the figures are rounded the way that board's firmware
would round them. Every figure is simulated; the label says "(estimate)" while any
coefficient is one.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploykit.virtual_board import cost_table as T

MAC_SHAPES = {"CONV_2D", "CONV_3D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
              "TRANSPOSE_CONV"}
RECURRENT = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "RNN"}
LABEL = "simulated (estimate)" if T.ESTIMATE else "simulated"
_MAX_DEPTH = 8    # nested control flow deeper than this is a malformed (self-calling) model


@dataclass(frozen=True)
class InferenceCost:
    cycles: int
    micros: int

    @property
    def seconds(self) -> float:
        return self.micros / 1e6


# ----- the board ------------------------------------------------------------------------

def kernel_family(board) -> str:
    """reference | cmsis-nn | esp-nn: the board file's `kernels`, else from its arena class."""
    return getattr(board, "kernels", "") or T.FAMILY_OF_ARENA_CLASS.get(board.arena_class, "reference")


def core_traits(board) -> dict:
    """{"simd", "fpu", "speed"} of the board's core (an unlisted core: a plain M4-speed core)."""
    return T.CORES.get(getattr(board, "core", ""), T.UNKNOWN_CORE)


# ----- one operator -----------------------------------------------------------------------

def shape_class(op) -> str:
    """The shape that sets an operator's cycles per MAC (cost_table.MAC_FACTOR keys)."""
    if op.op in RECURRENT:
        return "recurrent"
    if op.op == "DEPTHWISE_CONV_2D":
        return "depthwise_3x3" if tuple(op.kernel) == (3, 3) else "depthwise"
    if op.op == "CONV_2D":
        if tuple(op.kernel) == (1, 1):
            return "conv_1x1"
        return "conv_few_channels" if 0 < op.in_channels < 4 else "conv"
    return {"FULLY_CONNECTED": "fully_connected", "BATCH_MATMUL": "batch_matmul",
            "TRANSPOSE_CONV": "transpose_conv", "CONV_3D": "conv"}.get(op.op, "")


def calibrated(board, section: str, kind: str = "", name: str = ""):
    """A figure of the board's ID.cost.toml (`deploykit calibrate`), or None where it has none.

    A cost file holds effective figures for that board (speed, FPU and kernel family
    already in them): they replace what the table and the board file would give."""
    value = getattr(board, "cost", None) or {}
    for key in (section, kind, name):
        if key:
            value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def overhead_cycles(board) -> float:
    """Per-operator overhead: the cost file's, else the board file's."""
    fitted = calibrated(board, "op_overhead_cycles")
    return board.op_overhead_cycles if fitted is None else fitted


def mac_dtype(dtype: str) -> str:
    """The cost file's dtype key of a MAC operator: int8, int16 or float32."""
    return "float32" if dtype in ("float32", "float16") else ("int16" if dtype == "int16" else "int8")


def element_kind(dtype: str) -> str:
    """The cost file's key of an element-wise operator's type: float or integer."""
    return "float" if dtype in ("float32", "float16") else "integer"


def element_count(op) -> int:
    """What an element-wise operator's cost counts: window elements for a pool, input
    elements for a reduction, output elements otherwise."""
    group = T.OP_GROUP.get(op.op, "other")
    if group == "pool":
        return op.out_elems * op.kernel[0] * op.kernel[1]
    return op.in_elems if group == "reduce" else op.out_elems


def op_cycles(op, board, _depth: int = 0) -> int:
    """Simulated cycles of one operator of the model on `board` (its subgraphs included)."""
    return round(overhead_cycles(board) + _work(op, board, _depth))


def _work(op, board, depth: int) -> float:
    if op.op in T.CONTROL_FLOW:
        return _control_flow(op, board, depth)
    if op.op in MAC_SHAPES or op.op in RECURRENT:
        return _mac_work(op, board)
    return _element_work(op, board)


def _mac_work(op, board) -> float:
    family, core = kernel_family(board), core_traits(board)
    shape = shape_class(op)
    if op.dtype in ("float32", "float16"):
        cpm = T.FLOAT_CPM[shape] * core["speed"] + (0.0 if core["fpu"] else T.SOFT_FLOAT_CPM * core["speed"])
        per_out = T.PER_OUTPUT_FLOAT * core["speed"] * (1.0 if core["fpu"] else T.SOFT_FLOAT_ELEMENT_FACTOR)
    else:
        factor = T.MAC_FACTOR_RECURRENT if shape == "recurrent" else T.MAC_FACTOR[(family, shape)]
        cpm = board.cycles_per_mac * factor * (T.INT16_FACTOR[family] if op.dtype == "int16" else 1.0)
        per_out = T.PER_OUTPUT_SHAPE.get((family, shape), T.PER_OUTPUT[family]) * core["speed"]
    fitted_cpm = calibrated(board, "cycles_per_mac", mac_dtype(op.dtype), shape)
    fitted_out = calibrated(board, "per_output", element_kind(op.dtype))
    cpm = cpm if fitted_cpm is None else fitted_cpm
    per_out = per_out if fitted_out is None else fitted_out
    work = op.macs * cpm + op.out_elems * per_out
    if shape == "recurrent":
        gate = T.PER_CELL_STEP_RECURRENT.get(op.dtype, T.PER_CELL_STEP_RECURRENT["float32"])
        soft = 1.0 if core["fpu"] or op.dtype != "float32" else T.SOFT_FLOAT_ELEMENT_FACTOR
        work += op.out_elems * gate * core["speed"] * soft
    return work


def _element_work(op, board) -> float:
    family, core = kernel_family(board), core_traits(board)
    group = T.OP_GROUP.get(op.op, "other")
    floating = op.dtype in ("float32", "float16")
    per = T.PER_ELEMENT[group]["float" if floating else family] * core["speed"]
    if floating and not core["fpu"] and group in T.FLOAT_ARITHMETIC_GROUPS:
        per *= T.SOFT_FLOAT_ELEMENT_FACTOR
    fitted = calibrated(board, "per_element", element_kind(op.dtype), group)
    return element_count(op) * (per if fitted is None else fitted)


def _control_flow(op, board, depth: int) -> float:
    if depth >= _MAX_DEPTH:
        return 0.0
    total = {name: sum(op_cycles(o, board, depth + 1) for o in ops) for name, ops in op.branches.items()}
    if op.op == "WHILE":
        return while_trips(op) * (total.get("cond", 0) + total.get("body", 0)) + total.get("cond", 0)
    if op.op == "IF":
        return max(total.values(), default=0)
    return 0.0   # CALL_ONCE: its subgraph ran at the first Invoke


def while_trips(op) -> int:
    """A WHILE's static trip count, else cost_table.DEFAULT_WHILE_TRIPS (an assumption)."""
    return op.trips if op.trips is not None else T.DEFAULT_WHILE_TRIPS


# ----- the model ----------------------------------------------------------------------------

def breakdown(model, board) -> list[dict]:
    """Every operator of the main subgraph: index, op, dtype, shape class, MACs, cycles, note."""
    rows = []
    for i, op in enumerate(model.operators):
        rows.append({"index": i, "op": op.op, "dtype": op.dtype, "shape": shape_class(op),
                     "macs": int(op.macs), "cycles": op_cycles(op, board), "note": _note(op)})
    return rows


def _note(op) -> str:
    if op.op == "WHILE":
        if op.trips is None:
            return (f"trip count not static: counted {T.DEFAULT_WHILE_TRIPS} time(s) (assumption)")
        return f"{op.trips} trips (static)"
    if op.op == "IF":
        return "the costlier branch (assumption)"
    if op.op == "CALL_ONCE":
        return "runs at the first Invoke only: not counted per inference"
    return ""


def model_cycles(model, board) -> int:
    """Simulated cycles of one inference: the sum of `op_cycles` over the main subgraph."""
    return sum(op_cycles(op, board) for op in model.operators)


def timing_from_cycles(cycles: float, board) -> InferenceCost:
    """Cycles and microseconds as the board's firmware would report them."""
    hz = board.clock_mhz * 1_000_000
    if board.timer == "micros":
        micros = round(cycles * 1e6 / hz)
        return InferenceCost(micros * hz // 1_000_000, micros)
    cycles = round(cycles)
    return InferenceCost(cycles, cycles * 1_000_000 // hz)


def inference_timing(model, board) -> InferenceCost:
    """Simulated cycles and microseconds of one inference on `board`.

    `model` is a parsed model (tflite_model.TfliteModel); a manifest op table ([{op,
    count, macs}], no shapes) is still taken and costed as int8 ops of each kind's
    typical shape, a coarser figure."""
    if isinstance(model, list):
        return timing_from_cycles(sum(_table_row_cycles(row, board) for row in model), board)
    return timing_from_cycles(model_cycles(model, board), board)


def _table_row_cycles(row: dict, board) -> float:
    from deploykit.model.tflite_model import Operator
    count = int(row.get("count", 1))
    op = Operator(op=row["op"], inputs=[], outputs=[], macs=int(row.get("macs", 0)), dtype="int8",
                  kernel=(3, 3), in_channels=8)
    return count * overhead_cycles(board) + (_mac_work(op, board) if op.op in MAC_SHAPES | RECURRENT else 0.0)
