"""TFLM on the host keeping every tensor: each operator's outputs of one inference.

The `tflite-micro` interpreter normally reuses arena memory, so an intermediate tensor
is overwritten once its last reader ran; with InterpreterConfig.kPreserveAllTensors the
planner gives every tensor its own place (the arena grows) and GetTensor() reads any of
them after Invoke(). The layer-by-layer comparison runs the model this way on the host
(the reference) and on the virtual board (the device's dump), as `render --diagnostics`
firmware runs it on a board. Loading is proved safe in a child process first: TFLM
crashes on a too-small arena.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from deploykit.errors import BadInput
from deploykit.model import tflite_model
from deploykit.model.arena import round16
from deploykit.model.isolated import run_isolated
from deploykit.model.tflm_host import ARENA_CAP, _tensor_bytes, bisect_smallest, working_arena


@dataclass(frozen=True)
class OpOutput:
    """Output `output` of operator `op` after one inference: tensor index, dtype name, shape, bytes."""

    op: int
    output: int
    tensor: int
    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)


def _preserving(model: bytes, arena_size: int):
    from tflite_micro.python.tflite_micro import runtime
    return runtime.Interpreter.from_bytes(model, arena_size=arena_size,
                                          intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)


def _probe(model: bytes, arena_size: int) -> bool:
    """Child: allocate with every tensor preserved and run once on zeros."""
    it = _preserving(model, arena_size)
    for i in range(len(tflite_model.parse(model).input_indices)):
        d = it.get_input_details(i)
        it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
    it.invoke()
    return True


def _fits(model: bytes, size: int) -> bool:
    return run_isolated(_probe, model, size).ok


@functools.lru_cache(maxsize=8)
def preserving_arena(model: bytes) -> int:
    """An arena the preserving interpreter accepts: the normal working arena plus every
    tensor's bytes (each gets its own place), doubled until a probe succeeds."""
    size = round16(working_arena(model) + sum(_tensor_bytes(t) for t in tflite_model.parse(model).tensors))
    while not _fits(model, min(size, ARENA_CAP)):
        if size >= ARENA_CAP:
            raise BadInput(f"TFLM cannot keep every tensor of this model within {ARENA_CAP:,} bytes")
        size *= 2
    return min(size, ARENA_CAP)


def smallest_preserving_arena(model: bytes) -> int:
    """The smallest arena (16-byte steps) the preserving interpreter accepts, by bisection
    between 0 and preserving_arena(): the figure a `--diagnostics` firmware's arena needs."""
    model = bytes(model)
    return bisect_smallest(lambda size: _fits(model, size), 0, preserving_arena(model))


class LayerRunner:
    """One preserving TFLM interpreter: run() returns every operator's outputs."""

    def __init__(self, model: bytes):
        model = bytes(model)
        self.parsed = tflite_model.parse(model)
        self._it = _preserving(model, preserving_arena(model))
        self._inputs = [self._it.get_input_details(i) for i in range(len(self.parsed.input_indices))]

    def run(self, inputs: list[bytes]) -> list[list[OpOutput]]:
        """One inference on raw input tensor bytes; per operator (subgraph 0) its outputs."""
        if len(inputs) != len(self._inputs):
            raise BadInput(f"model has {len(self._inputs)} inputs, got {len(inputs)}")
        for i, (raw, d) in enumerate(zip(inputs, self._inputs, strict=False)):
            self._it.set_input(np.frombuffer(raw, dtype=d["dtype"]).reshape(d["shape"]), i)
        self._it.invoke()
        return [[self._output(k, op_index, t) for k, t in enumerate(op.outputs)]
                for op_index, op in enumerate(self.parsed.operators)]

    def _output(self, k: int, op_index: int, tensor: int) -> OpOutput:
        data = np.ascontiguousarray(self._it.GetTensor(tensor, 0)["tensor_data"])
        return OpOutput(op_index, k, tensor, data.dtype.name, tuple(data.shape), data.tobytes())


@functools.lru_cache(maxsize=1)
def _builtin_codes() -> dict[str, int]:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    return {k: v for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def op_code(name: str) -> int:
    """The TFLite builtin operator code of an op name (CUSTOM for custom ops)."""
    codes = _builtin_codes()
    return codes.get(name, codes["CUSTOM"])


def op_name(code: int) -> str:
    """The op name of a builtin operator code (as OP_TIMES carries it)."""
    names = {v: k for k, v in _builtin_codes().items()}
    return names.get(code, f"OP_{code}")
