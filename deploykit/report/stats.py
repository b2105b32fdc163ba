"""Summary statistics of a run: latency distributions, arena, throughput and the wire limit."""

from __future__ import annotations

import numpy as np

from deploykit.model.arena import with_margin


def distribution(values) -> dict | None:
    """mean, p50, p90, p99, max, stdev of `values` (an iterable, None for absent, or an
    array, NaN for absent); None when there are none."""
    if isinstance(values, np.ndarray):
        a = values[~np.isnan(values)] if values.dtype.kind == "f" and np.isnan(values).any() else values
    else:
        a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return None
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(a.max()), "stdev": float(a.std())}


def histogram(values: np.ndarray, bins: int = 40) -> tuple[list, list] | None:
    """(counts, edges) of the values present (NaN absent); None when there are none.

    The plots draw these, so no figure needs the values themselves."""
    a = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    if a.size == 0:
        return None
    counts, edges = np.histogram(a, bins=bins)
    return counts.tolist(), edges.tolist()


def recommended_arena(used: int) -> int:
    """The arena to configure for `used` bytes: the same rule render sizes firmware with."""
    return with_margin(used)


def wire_limit(baud: int, in_bytes: int, out_bytes: int) -> float:
    """Samples/s the line's byte rate (baud/10) allows for the payload alone."""
    return baud / 10.0 / (in_bytes + out_bytes)


def throughput(samples: int, seconds: float, baud: int, in_bytes: int, out_bytes: int) -> dict:
    limit = wire_limit(baud, in_bytes, out_bytes)
    rate = samples / seconds if samples and seconds > 0 else None
    return {"samples_per_s": rate, "wire_limit_samples_per_s": limit,
            "link_efficiency": rate / limit if rate else None,
            "baud": int(baud), "measured_samples": int(samples), "seconds": float(seconds)}
