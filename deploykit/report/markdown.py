"""report.md: the report's figures as Markdown tables."""

from __future__ import annotations


# One line under a table, where its figures need reading with care.
NOTES = {"Throughput": "link_efficiency = samples/s over the wire limit, which counts each sample's input "
                       "and output bytes one after the other at baud/10; the UART is full duplex (inputs "
                       "go out while results come back), so an overlapping protocol can exceed 1."}


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def section_rows(report: dict) -> dict[str, tuple[list[str], list[list]]]:
    """The tables of the report: title -> (header, rows). Shared by Markdown and HTML."""
    tables = {}
    agreement = report.get("agreement") or {}
    keys = ["exact_fraction", "max_abs_steps", "mean_abs_steps", "mae", "rmse", "cosine"]
    tables["Agreement (device against references)"] = (
        ["reference"] + keys, [[name] + [figs.get(k) for k in keys] for name, figs in agreement.items()])
    accuracy = {k: v for k, v in (report.get("accuracy") or {}).items() if k != "task"}
    if accuracy:
        keys = sorted({k for v in accuracy.values() if v for k in v if k != "confusion"})
        tables[f"Accuracy against labels ({report['accuracy'].get('task')})"] = (
            ["model"] + keys, [[name] + [(v or {}).get(k) for k in keys] for name, v in accuracy.items()])
    stat = ["mean", "p50", "p90", "p99", "max", "stdev"]
    latency = "Latency (simulated: the board's cost model)" if report.get("simulated") else "Latency"
    tables[latency] = (["figure"] + stat, [[name] + [(d or {}).get(k) for k in stat]
                                              for name, d in (report.get("latency") or {}).items()])
    arena = report.get("arena") or {}
    tables["Arena (bytes)"] = (list(arena), [list(arena.values())])
    thr = report.get("throughput") or {}
    keys = ["samples_per_s", "wire_limit_samples_per_s", "link_efficiency", "baud"]
    tables["Throughput"] = (keys, [[thr.get(k) for k in keys]])
    faults = report.get("faults") or {}
    tables["Faults recovered"] = (list(faults), [list(faults.values())])
    checks = report.get("thresholds") or []
    if checks:
        tables["Thresholds"] = (["threshold", "check", "result"],
                                [[c["name"], c["message"], "pass" if c["passed"] else "FAIL"] for c in checks])
    return tables


def render_markdown(report: dict) -> str:
    model, device = report.get("model", {}), report.get("device", {})
    verdict = "PASSED" if report.get("passed", True) else "FAILED"
    lines = [f"# HIL report: {model.get('name')} on {device.get('board_id')} — {verdict}", "",
             f"- samples: {report['samples']} ({report.get('samples_failed', 0)} failed on the device)",
             f"- simulated: {_fmt(report['simulated'])}",
             f"- model sha256: `{model.get('sha256')}`",
             f"- data: `{report.get('data', {}).get('path')}`", ""]
    for title, (header, rows) in section_rows(report).items():
        lines += [f"## {title}", ""] + _table(header, rows)
        if title in NOTES:
            lines += [NOTES[title], ""]
    confusion = ((report.get("accuracy") or {}).get("device") or {}).get("confusion")
    if confusion:
        lines += ["## Confusion matrix (device; rows true, columns predicted)", ""]
        lines += _table(["true \\ pred"] + [str(i) for i in range(len(confusion))],
                        [[i] + row for i, row in enumerate(confusion)])
    from deploykit.report.diagnostics import markdown_lines
    lines += markdown_lines(report)  # per-operator timing, layer diff (when asked for)
    log = report.get("device_log") or []
    if log:
        lines += ["## Device log (LOG frames)", "", *[f"    {line}" for line in log], ""]
    return "\n".join(lines)
