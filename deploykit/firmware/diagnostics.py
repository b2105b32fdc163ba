"""`render --diagnostics`: what the firmware needs to profile operators and keep tensors.

A diagnostics build wraps every operator in a MicroProfiler (ticks per operator, OP_TIMES)
and has TFLM keep every intermediate tensor (preserve_all_tensors; TENSOR_CHUNK dumps),
so its arena grows. By how much is measured, not guessed: the smallest arena the
tflite-micro interpreter accepts on this host with every tensor preserved, less the
smallest it accepts normally (the manifest's host_min). Both are host (64-bit) figures;
the difference is almost all tensor data, which is the same on a 32-bit board.
"""

from __future__ import annotations

from typing import Any

from deploykit.model import tflite_model
from deploykit.model.tflm_layers import op_code, smallest_preserving_arena
from deploykit.protocol.spec import Capability

CAPABILITIES = int(Capability.OP_TIMING | Capability.TENSOR_DUMP | Capability.TIMED_LOOP)


def diagnostics_plan(manifest, model: bytes) -> dict:
    """Operators (code, output tensors) for the firmware's tables and the arena growth."""
    parsed = tflite_model.parse(model)
    if len(parsed.operators) > 0xFFFF:
        from deploykit.errors import BadInput
        raise BadInput(f"model has {len(parsed.operators)} operators; --diagnostics handles at most 65535")
    normal = int((manifest["arena"] or {}).get("host_min") or 0)
    preserving = smallest_preserving_arena(model)
    extra = max(0, preserving - normal)
    extra = -(-extra // 16) * 16
    ops: list[dict[str, Any]]
    ops = [{"index": i, "op": op.op, "code": op_code(op.op), "outputs": [int(t) for t in op.outputs]}
           for i, op in enumerate(parsed.operators)]
    starts, at = [], 0
    for op in ops:
        starts.append(at)
        at += len(op["outputs"])
    return {"ops": ops, "output_starts": starts, "n_outputs": at, "extra_bytes": extra,
            "host_min": normal, "preserving_min": preserving,
            "note": (f"+{extra} bytes for --diagnostics (TFLM keeping every intermediate tensor: "
                     f"{preserving} B with all tensors preserved against {normal} B without, "
                     f"measured on this host with the tflite-micro interpreter)")}
