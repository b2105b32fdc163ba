"""The report's at-a-glance tables and notes, shared by report.md and report.html.

fit (flash and RAM against the board's limits, with the margin), per class (with class
names), versions and run (time, host, port); the notes under the latency table (what the
host round trip adds, and a figure that took the same time on every sample, drawn as
no histogram). Cells are text already formatted with their units (report/units.py).
"""

from __future__ import annotations

from deploykit.report import units

ROUND_TRIP_NOTE = (
    "Inference (us) is timed on the device around Invoke alone. The host round trip "
    "(round_trip_us) is timed on the host from sending a sample to receiving its result: the "
    "inference plus both records crossing the serial link at the baud rate, USB polling and OS "
    "scheduling; the gap between the two is the link, not the model.")


def _margin(region: dict) -> str:
    margin, limit = region.get("margin"), region.get("limit")
    if margin is None:
        return "–"
    share = units.pct(abs(margin) / limit) if limit else ""
    if margin < 0:
        return f"OVER by {units.size(-margin)} ({share})"
    return f"{units.size(margin)} free ({share})"


def fit_table(report: dict) -> tuple[list[str], list[list]] | None:
    """region, used, board limit, used %, margin; then the arena row."""
    fit = report.get("fit")
    if not fit:
        return None
    rows = []
    for name in ("flash", "ram"):
        region = fit.get(name) or {}
        rows.append(["flash" if name == "flash" else "RAM", units.size(region.get("used")),
                     units.size(region.get("limit")), units.pct(region.get("used_fraction")), _margin(region)])
    arena = fit.get("arena") or {}
    used, configured = arena.get("used"), arena.get("configured")
    rows.append(["tensor arena", units.size(used), f"{units.size(configured)} configured",
                 units.pct(used / configured) if used is not None and configured else "–",
                 _margin({"margin": configured - used, "limit": configured}
                         if used is not None and configured else {})])
    return ["region", "used", "limit", "used %", "margin"], rows


def fit_title(report: dict) -> str:
    fit = report.get("fit") or {}
    kind = "PlatformIO build" if fit.get("source") == "build" else "estimate"
    return f"Fit on {fit.get('board')} ({kind})"


def per_class_table(report: dict) -> tuple[list[str], list[list]] | None:
    per_class = report.get("per_class")
    if not per_class:
        return None
    rows = [[c["class"], c["name"], c["samples"], c["correct"], units.pct(c["recall"]), units.pct(c["precision"])]
            for c in per_class]
    return ["class", "name", "samples", "correct", "recall", "precision"], rows


def versions_table(report: dict) -> tuple[list[str], list[list]] | None:
    """What made this report: tool versions, the board's TFLM library, when, where."""
    versions, host = report.get("versions"), report.get("host") or {}
    if not versions and not host:
        return None
    versions = versions or {}
    rows = [["deploykit", versions.get("deploykit")], ["TensorFlow (convert)", versions.get("tensorflow")],
            ["TFLM on the host (tflite-micro)", versions.get("tflite_micro")],
            ["board's TFLM library", versions.get("board_tflm_library")],
            ["started at", _started(report)], ["duration", _duration(report.get("duration_s"))],
            ["host", host.get("name")], ["port", host.get("port")]]
    return ["item", "value"], [[k, "–" if v is None else v] for k, v in rows]


def _started(report: dict) -> str | None:
    started = report.get("started_at")
    offset = (report.get("host") or {}).get("utc_offset")
    return f"{started} (UTC{offset[:3]}:{offset[3:]})" if started and offset else started


def _duration(seconds) -> str | None:
    return None if seconds is None else units.time_us(seconds * 1e6)


def constant_figures(report: dict) -> list[str]:
    """'inference: every one of the N samples took X' for latency figures with one value."""
    lines = []
    labels = {"us": ("inference", units.time_us), "round_trip_us": ("host round trip", units.time_us),
              "cycles": ("inference", units.cycles)}
    for name, dist in (report.get("latency") or {}).items():
        if name in labels and dist and dist.get("stdev") == 0 and dist.get("max") == dist.get("p50"):
            label, fmt = labels[name]
            lines.append(f"{label} ({name}): every one of the {report.get('samples')} samples took "
                         f"{fmt(dist['max'])}, so no histogram is drawn")
    return lines


def latency_notes(report: dict) -> list[str]:
    return [ROUND_TRIP_NOTE] + [line[0].upper() + line[1:] + "." for line in constant_figures(report)]


def latency_cells(name: str, dist: dict | None, stat: list[str]) -> list:
    """One latency row: times with their unit (ns/µs/ms), cycles as whole cycles."""
    fmt = units.cycles if name == "cycles" else units.time_us
    return [name] + [fmt((dist or {}).get(k)) for k in stat]
