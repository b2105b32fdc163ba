"""What streaming yields per record: its result, or an explicit failure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleResult:
    """One record's outputs (raw output-record bytes) and timings."""

    record: int
    outputs: bytes
    cycles: int
    micros: int
    round_trip_s: float


@dataclass(frozen=True)
class SampleFailure:
    """A record the device could not run (ERROR INVOKE_FAILED)."""

    record: int
    reason: str
