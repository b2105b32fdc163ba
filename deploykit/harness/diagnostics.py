"""`hil run --op-timing N` and `--layer-diff K|auto`: why is it slow, why does it differ.

Op timing profiles N records spread over the set (OP_TIMING_REQ after each) and tabulates
per operator: op, its tensors' shapes, MACs, cycles p50, share of the total and MACs per
cycle. The layer diff asks the device for every operator's outputs of one inference
(TENSOR_DUMP_REQ), runs TFLM on the host keeping every tensor on the same record, and
names the first operator whose output differs, by how many quantization steps, and how
the difference grows towards the output. Both refuse (exit 2) a firmware not rendered
with --diagnostics, at connect, before the run spends any time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploykit.errors import BadInput
from deploykit.harness import diag_link
from deploykit.model import tflite_model
from deploykit.protocol import Capability, DType, TimerKind

AUTO_RECORDS = 3
RENDER_OPTION = "--diagnostics"


@dataclass(frozen=True)
class DiagnosticsOptions:
    """What `hil run` was asked for: op_timing records (0: none), layer_diff (None, an index or
    'auto'), timed_loop seconds (None: none; harness/timed_loop.py)."""

    op_timing: int = 0
    layer_diff: int | str | None = None
    timed_loop: float | None = None

    @classmethod
    def parse(cls, op_timing: int | None, layer_diff: str | None,
              timed_loop: float | None = None) -> DiagnosticsOptions:
        from deploykit.harness.timed_loop import check_seconds
        seconds = check_seconds(timed_loop)
        if op_timing is not None and op_timing < 1:
            raise BadInput(f"--op-timing {op_timing}: give the number of records to profile (1 or more)")
        if layer_diff is None or str(layer_diff) == "auto":
            return cls(op_timing or 0, layer_diff, seconds)
        if not str(layer_diff).isdigit():
            raise BadInput(f"--layer-diff {layer_diff!r}: give a record index (0 or more) or `auto`")
        return cls(op_timing or 0, int(layer_diff), seconds)

    @property
    def wanted(self) -> bool:
        return bool(self.op_timing) or self.layer_diff is not None or self.timed_loop is not None


def require(hello, options: DiagnosticsOptions, url: str) -> None:
    """Refuse, before the run, a firmware without the capabilities asked for (exit 2)."""
    from deploykit.link.identity import require_capability
    needs = ([Capability.OP_TIMING] if options.op_timing else []) + \
            ([Capability.TENSOR_DUMP] if options.layer_diff is not None else [])
    for cap in needs:
        try:
            require_capability(hello, cap, RENDER_OPTION, url)
        except BadInput as exc:
            raise BadInput(f"not built with {RENDER_OPTION}: {exc}") from None
    if options.timed_loop is not None:
        from deploykit.harness import timed_loop
        timed_loop.require(hello, url)


def run(session, manifest, inputs, rows: dict, options: DiagnosticsOptions) -> dict:
    """The report sections asked for: {"op_timing": ..., "layer_diff": ...}."""
    model = tflite_model.parse(manifest.model_bytes())
    out = {}
    if options.op_timing:
        out["op_timing"] = op_timing(session, model, inputs, options.op_timing)
    if options.layer_diff is not None:
        out["layer_diff"] = layer_diff(session, manifest, model, inputs, rows, options.layer_diff)
    if options.timed_loop is not None:
        from deploykit.harness import timed_loop
        out["timed_loop"] = timed_loop.run(session, inputs, options.timed_loop)
    return out


# ----------------------------------------------------------------------------- op timing

def spread(n: int, total: int) -> list[int]:
    """n record indices spread evenly over 0..total-1 (fewer when the set is smaller)."""
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(n, total))}) if total else []


def op_timing(session, model, inputs, n: int) -> dict:
    """Per-operator table from OP_TIMES of n records spread over the set."""
    from deploykit.model.tflm_layers import op_name
    hello = session.hello
    records = spread(n, len(inputs))
    ticks: list[list[int]] = []
    codes: list[int] = []
    for index in records:
        entries = diag_link.op_times(session, inputs.records([index])[0].tobytes())
        codes = [code for _, code, _ in entries]
        ticks.append([t for _, _, t in entries])
    per_tick = hello.cpu_hz / 1e6 if hello.timer == TimerKind.micros else 1.0
    p50 = np.median(np.asarray(ticks, dtype=np.float64), axis=0) * per_tick if ticks else np.zeros(0)
    total = float(p50.sum())
    rows = []
    for i, code in enumerate(codes):
        op = model.operators[i] if i < len(model.operators) else None
        cycles = float(p50[i])
        rows.append({
            "index": i, "op": op.op if op else op_name(code), "op_code": code,
            "inputs": [_shape(model, t) for t in (op.inputs if op else []) if t >= 0],
            "outputs": [_shape(model, t) for t in (op.outputs if op else [])],
            "macs": int(op.macs) if op else 0, "cycles_p50": round(cycles, 1),
            "share": cycles / total if total else 0.0,
            "macs_per_cycle": (op.macs / cycles) if op and cycles else None,
        })
    return {"records": records, "simulated": bool(hello.simulated), "timer": hello.timer.name,
            "cycles_from": "micros x cpu_hz" if hello.timer == TimerKind.micros else "cycle counter",
            "total_cycles_p50": round(total, 1), "ops": rows}


def _shape(model, tensor: int) -> list[int]:
    return list(model.tensors[tensor].shape)


# ----------------------------------------------------------------------------- layer diff

def layer_diff(session, manifest, model, inputs, rows: dict, which) -> dict:
    """Layer-by-layer comparison of the device with TFLM on the host, on one record or `auto`."""
    from deploykit.model.tflm_layers import LayerRunner
    host = LayerRunner(manifest.model_bytes())
    records = _auto_records(host, inputs, rows) if which == "auto" else [_checked(which, len(inputs))]
    compared = []
    for index in records:
        record = inputs.records([index])[0].tobytes()
        device = diag_link.tensor_dump(session, record)
        reference = host.run(_split(record, host))
        compared.append(compare(index, model, device, reference))
    return {"asked": which if which == "auto" else int(which), "records": compared,
            "note": None if compared else "no record on which the device and TFLM on the host disagree"}


def _checked(index: int, total: int) -> int:
    if not 0 <= index < total:
        raise BadInput(f"--layer-diff {index}: the data has records 0..{total - 1}")
    return index


def _split(record: bytes, host) -> list[bytes]:
    """A record's input tensors, by the host model's input sizes."""
    parts, off = [], 0
    for t in host.parsed.input_indices:
        spec = host.parsed.tensors[t]
        size = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        parts.append(record[off:off + size])
        off += size
    return parts


def _auto_records(host, inputs, rows: dict) -> list[int]:
    """The first AUTO_RECORDS records whose device outputs differ from TFLM on the host."""
    found = []
    for index in sorted(rows):
        row = rows[index]
        if "outputs" not in row:
            continue
        ref = host.run(_split(inputs.records([index])[0].tobytes(), host))
        expected = [_host_output(ref, t) for t in host.parsed.output_indices]
        if any(e is None for e in expected):
            continue  # an output no operator writes (an input passed through): nothing to compare
        got = [np.asarray(o).ravel() for o in row["outputs"]]
        if any(g.size != e.size or np.any(g.astype(np.float64) != e.astype(np.float64))
               for g, e in zip(got, expected, strict=False)):
            found.append(index)
            if len(found) == AUTO_RECORDS:
                break
    return found


def _host_output(ref, tensor: int):
    for op_outputs in ref:
        for out in op_outputs:
            if out.tensor == tensor:
                return np.frombuffer(out.data, dtype=out.dtype)
    return None


def compare(index: int, model, device: list[list[dict]], reference) -> dict:
    """Per operator the largest difference in steps, then the first operator that differs."""
    ops = []
    for i, ref_outputs in enumerate(reference):
        dev_outputs = device[i] if i < len(device) else []
        worst, differing, elements, scale = 0.0, 0, 0, 0.0
        for k, ref in enumerate(ref_outputs):
            want = np.frombuffer(ref.data, dtype=ref.dtype).astype(np.float64)
            got = _device_array(dev_outputs[k] if k < len(dev_outputs) else None, ref.dtype, want.size)
            diff = np.abs(want) + 1 if got is None else np.abs(got - want)  # missing: all differ
            worst = max(worst, float(diff.max()) if diff.size else 0.0)
            differing += int(np.count_nonzero(diff))
            elements += diff.size
            scale = scale or _scale(model, ref.tensor)
        ops.append({"index": i, "op": model.operators[i].op, "max_abs_steps": worst,
                    "max_abs_diff": worst * scale if scale else worst,
                    "differing_fraction": differing / elements if elements else 0.0})
    first = next((o for o in ops if o["max_abs_steps"] > 0), None)
    growth = [{"index": o["index"], "op": o["op"], "max_abs_steps": o["max_abs_steps"],
               "differing_fraction": round(o["differing_fraction"], 4)} for o in ops[first["index"]:]] if first else []
    return {"record": index, "ops": ops, "first_diverging": first and {
        "index": first["index"], "op": first["op"], "max_abs_steps": first["max_abs_steps"],
        "differing_fraction": first["differing_fraction"]}, "growth": growth}


def _device_array(part: dict | None, dtype: str, size: int) -> np.ndarray | None:
    """A device output as float64, or None when it is missing or not the host tensor's size."""
    if part is None or part["dtype"] not in DType.__members__.values():
        return None
    got = np.frombuffer(part["data"], dtype=DType(part["dtype"]).numpy).astype(np.float64)
    return got if got.size == size else None


def _scale(model, tensor: int) -> float:
    scales = model.tensors[tensor].scales
    return float(scales[0]) if scales else 0.0
