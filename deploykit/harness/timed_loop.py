"""`hil run --timed-loop SECONDS`: a stable latency figure, timed as MLPerf Tiny times one.

The device reruns one record back to back for at least SECONDS (TIMED_LOOP_REQ), five
times; each run's per-inference time is its summed microseconds over its iterations, and
the report gives their median beside the per-sample distribution. The loop runs on the
device, so neither the link nor the host's clock is in the figure. A firmware without the
TIMED_LOOP capability is refused (exit 2) at connect, naming `render --diagnostics`.
"""

from __future__ import annotations

import math
import statistics

from deploykit.errors import BadInput, DeviceError
from deploykit.harness import diag_link
from deploykit.protocol import Capability, TimedLoop, TimedLoopRequest

RUNS = 5
RECORD = 0                 # the record of the set the loop reruns
MAX_MS = 0xFFFFFFFF        # min_ms is a u32
RENDER_OPTION = "--diagnostics"


def check_seconds(seconds: float | None) -> float | None:
    """--timed-loop's value: a positive number of seconds, within the request's u32 of ms."""
    if seconds is None:
        return None
    if not math.isfinite(seconds) or seconds <= 0 or seconds * 1000 > MAX_MS:
        raise BadInput(f"--timed-loop {seconds}: give the seconds each of the {RUNS} loops runs, e.g. 10")
    return float(seconds)


def require(hello, url: str) -> None:
    """Refuse, before the run, a firmware built without the timed loop (exit 2)."""
    from deploykit.link.identity import require_capability
    try:
        require_capability(hello, Capability.TIMED_LOOP, RENDER_OPTION, url)
    except BadInput as exc:
        raise BadInput(f"not built with {RENDER_OPTION}: {exc}") from None


def run(session, inputs, seconds: float) -> dict:
    """report.json's `timed_loop`: the five runs and the median per-inference time."""
    record = inputs.records([RECORD])[0].tobytes()
    diag_link.run_record(session, record)   # it becomes record 0 on the wire
    min_ms = max(1, math.ceil(seconds * 1000))
    runs = [_one(session, min_ms) for _ in range(RUNS)]
    per_us = [r["per_inference_us"] for r in runs]
    per_cycles = [r["per_inference_cycles"] for r in runs]
    hello = session.hello
    return {"seconds": seconds, "record": RECORD, "runs": runs,
            "iterations": [r["iterations"] for r in runs],
            "median_us": round(statistics.median(per_us), 3),
            "median_cycles": round(statistics.median(per_cycles), 1),
            "spread_us": round(max(per_us) - min(per_us), 3),
            "simulated": bool(hello.simulated), "timer": hello.timer.name}


def _one(session, min_ms: int) -> dict:
    got: list[TimedLoop] = []

    def take(msg) -> bool:
        if isinstance(msg, TimedLoop) and msg.record == 0:
            got.append(msg)
            return True
        return False

    # the device reads nothing while it loops: wait the loop's length plus the usual timeout
    diag_link.ask(session, TimedLoopRequest(0, min_ms), take, "the timed loop's answer",
                  idle=min_ms / 1000 + diag_link.IDLE_TIMEOUT)
    msg = got[-1]
    if msg.iterations < 1:
        raise DeviceError(f"the device on {session.url} answered a timed loop of 0 inferences")
    return {"iterations": msg.iterations, "cycles": msg.cycles, "micros": msg.micros,
            "seconds": msg.micros / 1e6,
            "per_inference_us": msg.micros / msg.iterations,
            "per_inference_cycles": msg.cycles / msg.iterations}
