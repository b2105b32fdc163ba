"""Numbers as an engineer reads them: percentages, times with units, bytes with separators.

The report's JSON keeps raw numbers (scripts read them); report.md and report.html show
these strings, so a fraction of 1 reads "100 %", a time of 0.000452 µs reads "0.452 ns"
and a float never shows more digits than the measurement carries.
"""

from __future__ import annotations

import math


def _plain(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def sig(value, digits: int = 3) -> str:
    """`value` with `digits` significant digits, no exponent for everyday magnitudes."""
    if not _plain(value):
        return "–" if value is None else str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{round(value):,}"
    if magnitude < -4:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits - 1 - magnitude}f}"


def pct(fraction) -> str:
    """A fraction as a percentage: 1 -> "100 %", 0.8 -> "80 %"; never rounds up to 100 %."""
    if not _plain(fraction):
        return "–" if fraction is None else str(fraction)
    value = fraction * 100
    for decimals in (1, 2, 3):
        text = f"{value:.{decimals}f}"
        if not (text.startswith("100.") and fraction < 1):
            break
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return f"{text} %"


def time_us(us) -> str:
    """A duration given in µs, in ns, µs, ms or s with 3 significant digits."""
    if not _plain(us):
        return "–" if us is None else str(us)
    if us == 0:
        return "0 µs"
    for limit, scale, unit in ((1, 1e3, "ns"), (1e3, 1, "µs"), (1e6, 1e-3, "ms")):
        if abs(us) < limit:
            return f"{sig(us * scale)} {unit}"
    return f"{sig(us * 1e-6)} s"


def cycles(value) -> str:
    """A cycle count: whole cycles with separators (means of many samples rounded too)."""
    if not _plain(value):
        return "–" if value is None else str(value)
    return f"{round(value):,} cycles" if abs(value) >= 100 else f"{sig(value)} cycles"


def size(value) -> str:
    """Bytes with thousands separators and, from 10 KiB, the KiB figure."""
    if not _plain(value):
        return "–" if value is None else str(value)
    text = f"{int(value):,} B"
    return text + f" ({sig(value / 1024)} KiB)" if abs(value) >= 10 * 1024 else text


def rate(value, unit: str = "samples/s") -> str:
    return f"{sig(value)} {unit}" if _plain(value) else ("–" if value is None else str(value))


def number(value) -> str:
    """Any other figure: integers as they are, floats with 4 significant digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    return sig(value, 4) if _plain(value) else ("–" if value is None else str(value))
