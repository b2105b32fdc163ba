"""The host side of the diagnostics requests (docs/protocol.md, Diagnostics).

Both requests ask about the device's last inference, so each helper first streams one
record (it becomes record 0 on the wire), then asks. The answers are stateless on the
device: an answer cut short (a lost frame) is asked for again, a bounded number of times.
"""

from __future__ import annotations

import time

from deploykit.errors import DeviceError
from deploykit.link.samples import SampleFailure
from deploykit.protocol import ErrorMsg, OpTimes, OpTimingRequest, TensorChunk, TensorDumpRequest

ATTEMPTS = 3
IDLE_TIMEOUT = 2.0  # seconds without a frame of the answer: ask again


def run_record(session, record: bytes):
    """Run one record on the device (record 0 on the wire); its SampleResult."""
    result = session.infer([record])[0]
    if isinstance(result, SampleFailure):
        raise DeviceError(f"the device on {session.url} failed the inference asked about: {result.reason}")
    return result


def op_times(session, record: bytes) -> list[tuple[int, int, int]]:
    """(op_index, op_code, ticks) per operator of one inference on `record`."""
    run_record(session, record)
    entries: dict[int, tuple[int, int, int]] = {}
    total: list[int] = []

    def take(msg) -> bool:
        if not isinstance(msg, OpTimes) or msg.record != 0:
            return False
        total[:] = [msg.total]
        for i, entry in enumerate(msg.entries):
            entries[msg.first + i] = tuple(entry)
        return len(entries) >= msg.total

    _ask(session, OpTimingRequest(0), take, "per-operator timings")
    return [entries[i] for i in range(total[0])]


def tensor_dump(session, record: bytes) -> list[list[dict]]:
    """Per operator, its outputs {tensor, dtype (DType code), data} of one inference on `record`."""
    run_record(session, record)
    parts: dict[tuple[int, int], dict] = {}
    shape: dict[str, int] = {}

    def take(msg) -> bool:
        if not isinstance(msg, TensorChunk) or msg.record != 0:
            return False
        shape["n_ops"] = msg.n_ops
        shape[f"outs{msg.op}"] = msg.n_outputs
        part = parts.setdefault((msg.op, msg.output), {"tensor": msg.tensor, "dtype": msg.dtype,
                                                        "data": bytearray(msg.total), "have": set()})
        part["data"][msg.offset:msg.offset + len(msg.data)] = msg.data
        part["have"].add((msg.offset, len(msg.data)))
        return _complete(parts, shape)

    _ask(session, TensorDumpRequest(0), take, "the tensor dump")
    return [[{"tensor": parts[(op, k)]["tensor"], "dtype": parts[(op, k)]["dtype"], "data": bytes(parts[(op, k)]["data"])}
             for k in range(shape[f"outs{op}"])] for op in range(shape["n_ops"])]


def _complete(parts: dict, shape: dict) -> bool:
    n_ops = shape.get("n_ops", 0)
    for op in range(n_ops):
        n_out = shape.get(f"outs{op}")
        if n_out is None:
            return False
        for k in range(n_out):
            part = parts.get((op, k))
            if part is None or sum(n for _, n in part["have"]) < len(part["data"]) or (not part["data"] and not part["have"]):
                return False
    return n_ops > 0


def _ask(session, request, take, what: str) -> None:
    """Send `request` until `take(msg)` says the answer is complete; ERROR ends it."""
    for attempt in range(ATTEMPTS):
        if attempt:
            session.faults.retries += 1
        session.link.send(request)
        idle = time.monotonic() + IDLE_TIMEOUT
        while time.monotonic() < idle:
            for event in session.receive():
                msg = session.parse(event)
                if isinstance(msg, ErrorMsg):
                    raise DeviceError(f"the device on {session.url} refused {what}: ERROR {msg.code} "
                                      f"({msg.text}, detail {msg.detail})")
                if msg is not None and take(msg):
                    return
                if isinstance(msg, (OpTimes, TensorChunk)):
                    idle = time.monotonic() + IDLE_TIMEOUT
    raise DeviceError(f"the device on {session.url} did not send {what} completely after {ATTEMPTS} requests; "
                      "check the link and retry")
