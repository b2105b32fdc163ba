"""The host side of the diagnostics requests (docs/protocol.md, Diagnostics).

Both requests ask about the device's last inference, so each helper first streams one
record (it becomes record 0 on the wire), then asks. The answers are stateless on the
device: an answer cut short (a lost frame) is asked for again, a bounded number of times.
"""

from __future__ import annotations

import time
from typing import cast

from deploykit.errors import DeviceError
from deploykit.link.samples import SampleFailure
from deploykit.protocol import ErrorMsg, OpTimes, OpTimingRequest, TensorChunk, TensorDumpRequest

IDLE_TIMEOUT = 2.0    # seconds without a frame of the answer: ask again
DAMAGED_TIMEOUT = 0.3  # the same, once a frame arrived damaged (the answer is likely incomplete)
MIN_CHUNK = 32         # smallest TENSOR_CHUNK data a retry asks for


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
            entries[msg.first + i] = cast("tuple[int, int, int]", tuple(entry))  # (op index, op code, ticks)
        return len(entries) >= msg.total

    ask(session, OpTimingRequest(0), take, "per-operator timings")
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
        part = parts.setdefault((msg.op, msg.output), {"tensor": msg.tensor, "dtype": msg.dtype, "missing": msg.total,
                                                        "data": bytearray(msg.total), "have": bytearray(msg.total)})
        end = msg.offset + len(msg.data)
        part["data"][msg.offset:end] = msg.data
        part["missing"] -= len(msg.data) - part["have"][msg.offset:end].count(1)
        part["have"][msg.offset:end] = b"\x01" * len(msg.data)
        return _complete(parts, shape)

    # each request after the first asks for chunks half as large: on a noisy link smaller
    # frames get through, and the pieces gathered so far are kept
    ask(session, lambda attempt: TensorDumpRequest(0, _chunk_for(attempt)), take, "the tensor dump")
    return [[{"tensor": parts[(op, k)]["tensor"], "dtype": parts[(op, k)]["dtype"],
              "data": bytes(parts[(op, k)]["data"])}
             for k in range(shape[f"outs{op}"])] for op in range(shape["n_ops"])]


def _complete(parts: dict, shape: dict) -> bool:
    n_ops = shape.get("n_ops", 0)
    for op in range(n_ops):
        n_out = shape.get(f"outs{op}")
        if n_out is None:
            return False
        for k in range(n_out):
            part = parts.get((op, k))
            if part is None or part["missing"]:
                return False
    return n_ops > 0


def _chunk_for(attempt: int) -> int:
    """TENSOR_DUMP_REQ max_chunk for the n-th request: any, then 256, 128, ... down to 32."""
    return 0 if attempt == 0 else max(MIN_CHUNK, 512 >> attempt)


def ask(session, request, take, what: str, idle: float = IDLE_TIMEOUT) -> None:
    """Send `request` until `take(msg)` says the answer is complete (pieces gathered over
    several answers count); ERROR ends it. At most session.max_retries + 1 requests, each
    given up after `idle` seconds without a frame of its answer."""
    attempts = session.max_retries + 1
    for attempt in range(attempts):
        if attempt:
            session.faults.retries += 1
        session.link.send(request(attempt) if callable(request) else request)
        wait, last = idle, time.monotonic()
        while time.monotonic() < last + wait:
            for event in session.receive():
                msg = session.parse(event)
                if isinstance(msg, ErrorMsg):
                    raise DeviceError(f"the device on {session.url} refused {what}: ERROR {msg.code} "
                                      f"({msg.text}, detail {msg.detail})")
                if msg is not None and take(msg):
                    return
                if msg is None or isinstance(msg, (OpTimes, TensorChunk)):
                    last = time.monotonic()
                    wait = DAMAGED_TIMEOUT if msg is None or wait == DAMAGED_TIMEOUT else idle
    raise DeviceError(f"the device on {session.url} did not send {what} completely after {attempts} requests; "
                      "check the link and retry")
