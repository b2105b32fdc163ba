"""Pass/fail thresholds on report figures; each becomes one JUnit test case."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deploykit.errors import BadInput


@dataclass(frozen=True)
class Thresholds:
    """Limits the user sets; None means not checked.

    min_agreement: agreement.tflm_host.exact_fraction must be at least this (the device
    runs TFLM, so its outputs should equal TFLM on the host bit for bit); for a model
    with several outputs, each output's too (outputs[k].agreement.tflm_host.exact_fraction).
    max_latency_us: latency.us.p99 must be at most this.
    max_arena: arena.used (bytes) must be at most this.
    """

    min_agreement: float | None = None
    max_latency_us: float | None = None
    max_arena: int | None = None

    def __post_init__(self):
        """Refuse a limit no run could meet before anything is measured or written."""
        for attr, ok, what in (("min_agreement", lambda v: 0 <= v <= 1, "a fraction from 0 to 1"),
                               ("max_latency_us", lambda v: v > 0, "microseconds above 0"),
                               ("max_arena", lambda v: v > 0, "bytes above 0")):
            value = getattr(self, attr)
            if value is not None and not (math.isfinite(value) and ok(value)):
                raise BadInput(f"--{attr.replace('_', '-')} {value} is not usable; give {what}")


CHECKS = (
    ("min_agreement", "agreement.tflm_host.exact_fraction", ">="),
    ("max_latency_us", "latency.us.p99", "<="),
    ("max_arena", "arena.used", "<="),
)


def lookup(report: dict, dotted: str):
    value = report
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def evaluate(report: dict, thresholds: Thresholds | None) -> list[dict]:
    """One case per threshold set: {name, figure, op, limit, value, passed, message}."""
    cases = []
    for attr, figure, op in CHECKS:
        limit = getattr(thresholds, attr, None) if thresholds else None
        if limit is None:
            continue
        value = lookup(report, figure)
        passed = value is not None and (value >= limit if op == ">=" else value <= limit)
        shown = "missing" if value is None else f"{value:g}"
        cases.append({"name": attr, "figure": figure, "op": op, "limit": limit, "value": value,
                      "passed": bool(passed),
                      "message": f"{figure} = {shown}, required {op} {limit:g}"})
    if thresholds and thresholds.min_agreement is not None:
        cases += _per_output_agreement(report, thresholds.min_agreement)
    return cases


def _per_output_agreement(report: dict, limit: float) -> list[dict]:
    """--min-agreement on every output after the first (the first is agreement.tflm_host)."""
    cases = []
    for o in (report.get("outputs") or [])[1:]:
        figure = f"outputs[{o['output']}].agreement.tflm_host.exact_fraction"
        value = lookup(o, "agreement.tflm_host.exact_fraction")
        shown = "missing" if value is None else f"{value:g}"
        cases.append({"name": f"min_agreement_output_{o['output']}", "figure": figure, "op": ">=", "limit": limit,
                      "value": value, "passed": value is not None and value >= limit,
                      "message": f"{figure} = {shown}, required >= {limit:g}"})
    return cases
