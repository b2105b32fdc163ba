"""TensorFlow Lite Micro on the host, through the `tflite-micro` Python package.

Real TFLM reference kernels, the same code a board runs. Anything that may crash in C++
(a too-small arena, an op TFLM lacks, a malformed model) is tried first in a child process.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from deploykit import extras
from deploykit.errors import BadInput, ToolError
from deploykit.model import tflite_model
from deploykit.model.arena import round16
from deploykit.model.isolated import run_isolated

_ALLOC_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_ALLOC_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_ALLOC_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_ALLOC_CAT = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_REGISTER = re.compile(rb"_ZN6tflite5micro\d+Register_([A-Z0-9_]+)Ev")
ARENA_CAP = 16 * 1024 * 1024  # the largest arena a probe tries: beyond any microcontroller's RAM


def _runtime():
    extras.require("tflite_micro", "running TFLM on this host")
    from tflite_micro.python.tflite_micro import runtime
    return runtime


@functools.lru_cache(maxsize=8)
def working_arena(model: bytes) -> int:
    """An arena AllocateTensors accepts, found by probing, not guessed: start from every
    tensor's bytes plus 16 KB (above the planner's need for most models) and double until
    a probe succeeds, up to ARENA_CAP."""
    size = round16(sum(_tensor_bytes(t) for t in tflite_model.parse(model).tensors) + 16 * 1024)
    while not _fits(model, min(size, ARENA_CAP)):
        if size >= ARENA_CAP:
            raise BadInput(f"TFLM could not allocate this model even with a {ARENA_CAP:,}-byte arena "
                           "(more than any microcontroller has)")
        size *= 2
    return min(size, ARENA_CAP)


def _tensor_bytes(t) -> int:
    n = int(np.prod([max(d, 1) for d in t.shape], dtype=np.int64)) if t.shape else 1
    try:
        return n * np.dtype(t.dtype).itemsize
    except TypeError:
        return n * 8


def _interpreter(model: bytes, arena_size: int | None):
    return _runtime().Interpreter.from_bytes(model, arena_size=arena_size or working_arena(model))


def _spec(details: dict, name: str) -> dict:
    q = details["quantization_parameters"]
    scales, zps = q["scales"], q["zero_points"]
    return {"name": name, "dtype": np.dtype(details["dtype"]).name,
            "shape": [int(d) for d in details["shape"]],
            "scale": float(scales[0]) if len(scales) else 0.0,
            "zero_point": int(zps[0]) if len(zps) else 0}


class TflmRunner:
    """One TFLM interpreter on the host, loaded only after a child process proved it safe."""

    def __init__(self, model: bytes, arena_size: int | None = None):
        model = bytes(model)
        parsed = tflite_model.parse(model)
        check_ops_supported(model, parsed)
        self.arena_size = arena_size or working_arena(model)
        probe = run_isolated(_probe, model, self.arena_size)
        if not probe.ok:
            raise BadInput(f"TFLM cannot run this model with a {self.arena_size}-byte arena "
                           f"({probe.status}: {_last_line(probe.output)}); give a larger arena")
        self.model = model
        self._it = _interpreter(model, self.arena_size)
        self.input_specs = [_spec(self._it.get_input_details(i), parsed.tensors[t].name)
                            for i, t in enumerate(parsed.input_indices)]
        self.output_specs = [_spec(self._it.get_output_details(i), parsed.tensors[t].name)
                             for i, t in enumerate(parsed.output_indices)]

    def invoke_raw(self, inputs: list[bytes]) -> list[bytes]:
        """Run one inference on raw input tensor bytes; return raw output tensor bytes."""
        if len(inputs) != len(self.input_specs):
            raise BadInput(f"model has {len(self.input_specs)} inputs, got {len(inputs)}")
        for i, (raw, spec) in enumerate(zip(inputs, self.input_specs, strict=True)):
            dtype = np.dtype(spec["dtype"])
            want = int(np.prod(spec["shape"])) * dtype.itemsize
            if len(raw) != want:
                raise BadInput(f"input {i} has {len(raw)} bytes, tensor {spec['shape']} {spec['dtype']} needs {want}")
            self._it.set_input(np.frombuffer(raw, dtype=dtype).reshape(spec["shape"]), i)
        self._it.invoke()
        return [np.ascontiguousarray(self._it.get_output(i)).tobytes() for i in range(len(self.output_specs))]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run each sample of x (already in the input dtype) one by one; stack the outputs
        of the first output tensor (a single-input model)."""
        return self.predict_all([x])[0]

    def predict_all(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Run each sample of one array per input (each in its input's dtype, same number
        of samples); return one stacked array per output tensor, in output order."""
        if len(xs) != len(self.input_specs):
            raise BadInput(f"model has {len(self.input_specs)} inputs, got {len(xs)} arrays")
        xs = [np.asarray(x) for x in xs]
        for x, spec in zip(xs, self.input_specs, strict=True):
            if x.dtype != np.dtype(spec["dtype"]):
                raise BadInput(f"inputs are {x.dtype}, the model input is {spec['dtype']}; quantize them first")
        n = len(xs[0])
        results = [np.empty((n,) + tuple(o["shape"][1:]), dtype=np.dtype(o["dtype"])) for o in self.output_specs]
        for i in range(n):
            for k, (x, spec) in enumerate(zip(xs, self.input_specs, strict=True)):
                self._it.set_input(x[i].reshape(tuple(spec["shape"])), k)
            self._it.invoke()
            for k, out in enumerate(results):
                out[i] = self._it.get_output(k).reshape(out.shape[1:])
        return results

    def reset(self) -> None:
        self._it.reset()


def _load_and_invoke(model: bytes, arena_size: int):
    """Child: allocate and run one inference on zeros; return the interpreter."""
    it = _interpreter(model, arena_size)
    for i in range(_count_inputs(model)):
        d = it.get_input_details(i)
        it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
    it.invoke()
    return it


def _count_inputs(model: bytes) -> int:
    return len(tflite_model.parse(model).input_indices)


def _record(model: bytes, arena_size: int) -> bool:
    """Child: allocate, invoke once, print the recording allocator's figures."""
    _load_and_invoke(model, arena_size).print_allocations()
    return True


def parse_allocations(text: str) -> dict:
    """Turn RecordingMicroAllocator lines into {total, head, tail, categories}."""
    cats = {m[1]: {"used": int(m[2]), "requested": int(m[3]), "count": int(m[4])}
            for m in _ALLOC_CAT.finditer(text)}
    found = _ALLOC_TOTAL.search(text)
    if not found:
        raise ToolError(f"no allocation figures in TFLM output: {text[:200]!r}")
    head, tail = _ALLOC_HEAD.search(text), _ALLOC_TAIL.search(text)
    return {"total": int(found[1]), "head": int(head[1]) if head else 0,
            "tail": int(tail[1]) if tail else 0, "categories": cats}


def measure_arena(model: bytes) -> dict:
    """Recorded arena use and the smallest arena AllocateTensors accepts, on this host.

    Every probe runs in a child process: TFLM segfaults when the arena is too small.
    """
    extras.require("tflite_micro", "measuring the arena with TFLM")
    model = bytes(model)
    working = working_arena(model)
    rec = run_isolated(_record, model, working)
    if not rec.ok:
        raise BadInput(f"TFLM could not allocate this model ({rec.status}: {_last_line(rec.output)})")
    alloc = parse_allocations(rec.output)
    minimum = _smallest_arena(model, alloc["total"], working)
    return {"host_recorded": alloc["total"], "host_min": minimum, "head": alloc["head"],
            "tail": alloc["tail"], "categories": alloc["categories"]}


def _smallest_arena(model: bytes, recorded: int, working: int) -> int:
    """Smallest arena (16-byte steps) with which allocation succeeds: grow from the
    recorded figure until it fits (`working` is known to), then bisect. Few probes."""
    lo, hi = 0, min(round16(recorded), working)
    while hi < working and not _fits(model, hi):
        lo, hi = hi, min(round16(hi * 5 // 4 + 16), working)
    return bisect_smallest(lambda size: _fits(model, size), lo, hi)


def bisect_smallest(fits, lo: int, hi: int) -> int:
    """The smallest 16-byte multiple in (lo, hi] for which fits(size) holds, given that
    fits(hi) holds and fits(lo) does not (lo = 0 stands for "nothing known to fail")."""
    while hi - lo > 16:
        mid = round16((lo + hi) // 2)
        if mid in (lo, hi):
            break
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _fits(model: bytes, size: int) -> bool:
    return run_isolated(_probe, model, size).ok


def _probe(model: bytes, arena_size: int) -> bool:
    _load_and_invoke(model, arena_size)
    return True


@functools.lru_cache(maxsize=1)
def supported_ops() -> tuple[str, ...]:
    """Builtin ops the installed TFLM registers, read from its extension's symbol table."""
    extras.require("tflite_micro", "running TFLM on this host")
    from tflite_micro.python.tflite_micro import _runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    builtins = {k for k in vars(s.BuiltinOperator) if not k.startswith("_")}
    found = {m.decode() for m in _REGISTER.findall(Path(_runtime.__file__).read_bytes())}
    return tuple(sorted(found & builtins))


NO_TFLM_DTYPES = ("float64", "complex64", "complex128", "string", "uint64")  # no TFLM kernel takes them
_NODE_FAILED = re.compile(r"Node ([A-Z0-9_]+) \(number (\d+)\) failed to (invoke|prepare)")


def check_ops_supported(model: bytes, parsed=None) -> None:
    """BadInput naming the model and what TFLM cannot run: a tensor of a dtype no TFLM
    kernel takes, an op TFLM has no kernel for, or an op whose kernel refuses its tensors'
    types (TFLM says which when it runs the model once on zeros)."""
    parsed = parsed or tflite_model.parse(model)
    _check_dtypes(parsed)
    known = set(supported_ops())
    missing = [o["op"] for o in parsed.op_table() if known and o["op"] not in known]
    if not missing:
        probe = run_isolated(_load_only, bytes(model))
        missing = _MISSING_OP.findall(probe.output) if not probe.ok else []
        if not probe.ok and not missing:
            raise BadInput(f"TFLM cannot load {parsed.origin} ({probe.status}: {_last_line(probe.output)}); "
                           "re-export it with `deploykit convert`")
    if missing:
        raise BadInput(f"{parsed.origin} uses op(s) {', '.join(sorted(set(missing)))}, which TFLM (tflite-micro "
                       f"{_tflm_version()}) has no kernel for; replace them in the model with ops TFLM runs "
                       "(`deploykit inspect` lists the model's ops)")
    _check_kernels_accept(model, parsed)


def _check_dtypes(parsed) -> None:
    for t in parsed.tensors:
        if t.dtype not in NO_TFLM_DTYPES:
            continue
        users = dict.fromkeys(o.op for o in parsed.operators if t.index in o.inputs or t.index in o.outputs)
        role = ["the model input"] if t.index in parsed.input_indices else []
        role += ["the model output"] if t.index in parsed.output_indices else []
        role += [f"of op {', '.join(users)}"] if users else []
        raise BadInput(f"{parsed.origin}: tensor {t.name!r} ({'; '.join(role) or 'unused'}) is {t.dtype}, a type "
                       "no TFLM kernel runs (TFLM runs float32, int8 and int16, and int32, int64, bool and uint8 "
                       "in a few ops); export the model with float32 or quantized tensors")


def _check_kernels_accept(model: bytes, parsed) -> None:
    """One inference on zeros with the largest arena: a kernel that refuses its tensors' types
    (int64 into ADD, FLOAT64 into CAST) says so here; an arena problem is measured later."""
    output = _refusal_output(bytes(model)) or ""
    found = _NODE_FAILED.search(output)
    if found is None:
        return
    op, index = found[1], int(found[2])
    reason = [line.strip() for line in output[:found.start()].splitlines() if line.strip()]
    why = reason[-1].rstrip(".") if reason else f"it failed to {found[3]}"
    types = ""
    if index < len(parsed.operators) and parsed.operators[index].op == op:
        o = parsed.operators[index]
        types = ": " + "; ".join(
            f"{side} " + ", ".join(f"{parsed.tensors[i].name!r} {parsed.tensors[i].dtype}" for i in idx if i >= 0)
            for side, idx in (("inputs", o.inputs), ("outputs", o.outputs)))
    raise BadInput(f"{parsed.origin}: TFLM's {op} kernel (operator {index}{types}) refuses the model's types: "
                   f"{why}; change the model so the op gets types TFLM's kernel takes (float32, int8 or int16)")


@functools.lru_cache(maxsize=8)
def _refusal_output(model: bytes) -> str | None:
    """What TFLM printed when one inference on zeros failed with the largest arena, else None."""
    probe = run_isolated(_probe, model, ARENA_CAP)
    return None if probe.ok else probe.output


def _tflm_version() -> str:
    from deploykit.versions import package_version
    return package_version("tflite-micro") or "unknown"


def _load_only(model: bytes) -> bool:
    """Child: resolve every op; the arena is the cap, so only a missing op or a broken model fails."""
    _interpreter(model, ARENA_CAP)
    return True


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"
