"""report.md: the report's figures as Markdown tables.

Text that comes from a model, a data file or a device (names, paths, log lines) is
escaped: a model called `<img src=x onerror=...>` or `a|b` must show as written, not
become markup or break a table, and control characters become visible `\\xNN`.
"""

from __future__ import annotations

import re

from deploykit.report import glance, units

# `_` between letters or digits never emphasises (CommonMark), so tflm_host stays readable.
_MARKUP = re.compile(r"([\\`*\[\]<>|&~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _visible_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


def md_text(value) -> str:
    """`value` as Markdown text that renders exactly as written (markup escaped)."""
    return _visible_controls(_MARKUP.sub(r"\\\1", str(value)))


def md_code(value) -> str:
    """`value` as an inline code span, with a fence longer than any backtick run inside it."""
    text = _visible_controls(str(value))
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# One line under a table, where its figures need reading with care.
NOTES = {"Throughput": "link_efficiency = samples/s over the wire limit, which counts each sample's input "
                       "and output bytes one after the other at baud/10; the UART is full duplex (inputs "
                       "go out while results come back), so an overlapping protocol can exceed 100 %."}


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return units.number(v)
    return str(v)


PERCENT_KEYS = {"exact_fraction", "accuracy", "top1_agreement_with_desktop", "link_efficiency"}


def _cell(key: str, value):
    """A figure of a known kind with its unit (fractions as %); others as _fmt shows them."""
    return units.pct(value) if key in PERCENT_KEYS else value


TIMED_LOOP_TITLE = "Timed loop (one record back to back on the device)"


def timed_loop_table(loop: dict) -> tuple[list[str], list[list]]:
    """report.json `timed_loop` as rows: each run, then the median."""
    rows: list[list] = [[f"run {i + 1}", r["iterations"], round(r["seconds"], 3), round(r["per_inference_us"], 2)]
                        for i, r in enumerate(loop["runs"])]
    rows.append(["median", "", "", loop["median_us"]])
    return ["run", "iterations", "seconds", "per inference µs"], rows


def timed_loop_note(report: dict) -> str:
    loop = report["timed_loop"]
    p50 = ((report.get("latency") or {}).get("us") or {}).get("p50")
    beside = f"; the per-sample p50 is {p50:,.0f} µs" if p50 is not None else ""
    sim = "simulated by the virtual board's cost model; " if loop.get("simulated") else ""
    return (f"{sim}median per-inference time {loop['median_us']:,.2f} µs over {len(loop['runs'])} loops of at "
            f"least {loop['seconds']:g} s on record {loop['record']} (timer {loop['timer']}){beside}.")


def notes_for(title: str, report: dict) -> list[str]:
    """The lines printed under the table called `title`."""
    notes = [NOTES[title]] if title in NOTES else []
    if title == TIMED_LOOP_TITLE:
        notes.append(timed_loop_note(report))
    if title.startswith("Latency"):
        notes += glance.latency_notes(report)
    if title.startswith("Fit on"):
        notes.append(f"Basis: {(report.get('fit') or {}).get('basis')}.")
    return notes


def resumed_line(report: dict) -> str | None:
    """'N of M samples from an earlier run at T' when the run resumed one, else None."""
    resumed = report.get("resumed") or {}
    if not resumed.get("samples"):
        return None
    when = resumed.get("earlier_run_at") or "an unknown time"
    return f"{resumed['samples']} of {resumed.get('of')} samples from an earlier run at {when}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(_fmt(c)) for c in row) + " |" for row in rows]
    return lines + [""]


def section_rows(report: dict) -> dict[str, tuple[list[str], list[list]]]:
    """The tables of the report: title -> (header, rows). Shared by Markdown and HTML."""
    tables: dict[str, tuple[list[str], list[list]]] = {}
    fit = glance.fit_table(report)
    if fit:
        tables[glance.fit_title(report)] = fit
    agreement = report.get("agreement") or {}
    keys = ["exact_fraction", "max_abs_steps", "mean_abs_steps", "mae", "rmse", "cosine"]
    tables["Agreement (device against references)"] = (
        ["reference"] + keys, [[name] + [_cell(k, figs.get(k)) for k in keys] for name, figs in agreement.items()])
    per_output = output_rows(report)
    if per_output:
        tables["Per output (device against TFLM-host, LiteRT and the float model)"] = per_output
    accuracy = {k: v for k, v in (report.get("accuracy") or {}).items() if k != "task"}
    if accuracy:
        keys = sorted({k for v in accuracy.values() if v for k in v if k != "confusion"})
        tables[f"Accuracy against labels ({report['accuracy'].get('task')})"] = (
            ["model"] + keys, [[name] + [_cell(k, (v or {}).get(k)) for k in keys] for name, v in accuracy.items()])
    per_class = glance.per_class_table(report)
    if per_class:
        tables["Per class (device)"] = per_class
    stat = ["mean", "p50", "p90", "p99", "max", "stdev"]
    latency = ("Latency (simulated (estimate): the board's per-operator cost model)"
               if report.get("simulated") else "Latency")
    tables[latency] = (["figure"] + stat, [glance.latency_cells(name, d, stat)
                                              for name, d in (report.get("latency") or {}).items()])
    loop = report.get("timed_loop")
    if loop:  # beside the per-sample distribution
        tables[TIMED_LOOP_TITLE] = timed_loop_table(loop)
    arena = report.get("arena") or {}
    tables["Arena"] = (list(arena), [[units.size(v) for v in arena.values()]])
    thr = report.get("throughput") or {}
    keys = ["samples_per_s", "wire_limit_samples_per_s", "link_efficiency", "baud"]
    tables["Throughput"] = (keys, [[units.rate(thr.get("samples_per_s")),
                                    units.rate(thr.get("wire_limit_samples_per_s")),
                                    _cell("link_efficiency", thr.get("link_efficiency")), thr.get("baud")]])
    faults = report.get("faults") or {}
    tables["Faults recovered"] = (list(faults), [list(faults.values())])
    checks = report.get("thresholds") or []
    if checks:
        tables["Thresholds"] = (["threshold", "check", "result"],
                                [[c["name"], c["message"], "pass" if c["passed"] else "FAIL"] for c in checks])
    versions = glance.versions_table(report)
    if versions:
        tables["Versions and run"] = versions
    return tables


def output_rows(report: dict) -> tuple[list[str], list[list]] | None:
    """One row per output of a model with several: exact agreement with TFLM-host and
    LiteRT, and the device's MAE/max error against the float model (None when not run)."""
    outputs = report.get("outputs")
    if not outputs:
        return None
    rows = []
    for o in outputs:
        agree, vs = o.get("agreement") or {}, (o.get("vs_float") or {}).get("device") or {}
        rows.append([o["output"], o.get("name"),
                     _cell("exact_fraction", (agree.get("tflm_host") or {}).get("exact_fraction")),
                     _cell("exact_fraction", (agree.get("desktop") or {}).get("exact_fraction")),
                     _cell("mae", vs.get("mae")), _cell("max_error", vs.get("max_error"))])
    return (["output", "tensor", "exact vs TFLM-host", "exact vs LiteRT", "MAE vs float", "max error vs float"],
            rows)


def link_text(report: dict) -> str:
    """The serial link as the board file has it (report.json `link`)."""
    link = report.get("link") or {}
    if not link.get("bytes_per_s"):
        return "unknown (no board file for this device)"
    return f"{link['kind']}, {link['bytes_per_s']:,} B/s ({link['source']})"


def title_text(report: dict) -> str:
    """"NAME on BOARD (NOTE) — VERDICT", raw: each writer escapes it for its format."""
    model, device = report.get("model", {}), report.get("device", {})
    verdict = "PASSED" if report.get("passed", True) else "FAILED"
    note = f" ({report['note']})" if report.get("note") else ""
    return f"{model.get('name')} on {device.get('board_id')}{note} — {verdict}"


def render_markdown(report: dict) -> str:
    model = report.get("model", {})
    lines = [f"# HIL report: {md_text(title_text(report))}", "",
             f"- samples: {report['samples']} ({report.get('samples_failed', 0)} failed on the device)",
             *([f"- resumed: {resumed_line(report)}"] if resumed_line(report) else []),
             f"- simulated: {_fmt(report['simulated'])}",
             f"- link: {md_text(link_text(report))}",
             f"- model sha256: {md_code(model.get('sha256'))}",
             f"- data: {md_code(report.get('data', {}).get('path'))}", ""]
    for title, (header, rows) in section_rows(report).items():
        lines += [f"## {md_text(title)}", ""] + _table(header, rows)
        for note in notes_for(title, report):
            lines += [md_text(note), ""]
    confusion = ((report.get("accuracy") or {}).get("device") or {}).get("confusion")
    if confusion:
        lines += ["## Confusion matrix (device; rows true, columns predicted)", ""]
        names = report.get("classes") or [str(i) for i in range(len(confusion))]
        lines += _table(["true \\ pred"] + list(names), [[names[i]] + row for i, row in enumerate(confusion)])
    from deploykit.report.diagnostics import markdown_lines
    lines += markdown_lines(report)  # per-operator timing, layer diff (when asked for)
    log = report.get("device_log") or []
    if log:  # an indented code block shows text as is; only a line break could leave it
        lines += ["## Device log (LOG frames)", "", *[f"    {_visible_controls(line)}" for line in log], ""]
    return "\n".join(lines)
