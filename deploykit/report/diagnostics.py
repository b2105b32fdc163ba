"""The diagnostics sections of report.md and report.html: per-operator timing, layer diff.

report.json carries `op_timing` (harness/diagnostics.op_timing) and `layer_diff`
(harness/diagnostics.layer_diff) as they are; here they become tables and, in the
HTML, a bar chart of each operator's share of the cycles.
"""

from __future__ import annotations

import html

OP_HEADER = ["#", "op", "input shapes", "output shapes", "MACs", "cycles p50", "share", "MACs/cycle"]
DIFF_HEADER = ["#", "op", "max abs diff (steps)", "max abs diff (real)", "elements differing"]


def _shapes(shapes) -> str:
    return " ".join("x".join(map(str, s)) or "scalar" for s in shapes)


def op_rows(op_timing: dict) -> list[list]:
    """The per-operator table's rows (report.md, report.html, the CLI)."""
    return [[o["index"], o["op"], _shapes(o["inputs"]), _shapes(o["outputs"]), o["macs"], o["cycles_p50"],
             f"{o['share']:.1%}", None if o["macs_per_cycle"] is None else round(o["macs_per_cycle"], 3)]
            for o in op_timing["ops"]]


def op_caption(op_timing: dict) -> str:
    sim = "simulated by the virtual board's cost model; " if op_timing.get("simulated") else ""
    return (f"{sim}p50 over records {op_timing['records']}; timer {op_timing['timer']} "
            f"({op_timing['cycles_from']}); total {op_timing['total_cycles_p50']:,.0f} cycles")


def diff_summary(rec: dict) -> str:
    first = rec.get("first_diverging")
    if not first:
        return f"record {rec['record']}: every operator's output equals TFLM on the host"
    growth = " → ".join(f"#{g['index']} {g['op']} {g['max_abs_steps']:g}" for g in rec["growth"])
    return (f"record {rec['record']}: first diverging operator #{first['index']} {first['op']}, by up to "
            f"{first['max_abs_steps']:g} steps ({first['differing_fraction']:.0%} of its elements); "
            f"towards the output (max steps): {growth}")


def diff_rows(rec: dict) -> list[list]:
    return [[o["index"], o["op"], o["max_abs_steps"], o["max_abs_diff"], f"{o['differing_fraction']:.1%}"]
            for o in rec["ops"]]


def text_table(header: list[str], rows: list[list]) -> str:
    """A plain-text table (the CLI, a closing note)."""
    cells = [[str("–" if c is None else c) for c in row] for row in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells)


def markdown_lines(report: dict) -> list[str]:
    from deploykit.report.markdown import _table
    lines = []
    if report.get("op_timing"):
        lines += ["## Per-operator timing", "", op_caption(report["op_timing"]), ""]
        lines += _table(OP_HEADER, op_rows(report["op_timing"]))
    if report.get("layer_diff"):
        diff = report["layer_diff"]
        lines += ["## Layer-by-layer comparison with TFLM on the host", ""]
        if diff.get("note"):
            lines += [diff["note"], ""]
        for rec in diff["records"]:
            lines += [diff_summary(rec), ""] + _table(DIFF_HEADER, diff_rows(rec))
    return lines


def html_part(report: dict) -> str:
    from deploykit.report.html import _img, _table
    parts = []
    if report.get("op_timing"):
        op = report["op_timing"]
        parts += ["<h2>Per-operator timing</h2>", f"<p>{html.escape(op_caption(op))}</p>",
                  _table(OP_HEADER, op_rows(op)), _img(op_share_plot(op), "cycles per operator")]
    if report.get("layer_diff"):
        diff = report["layer_diff"]
        parts.append("<h2>Layer-by-layer comparison with TFLM on the host</h2>")
        if diff.get("note"):
            parts.append(f"<p>{html.escape(diff['note'])}</p>")
        for rec in diff["records"]:
            parts += [f"<p>{html.escape(diff_summary(rec))}</p>", _table(DIFF_HEADER, diff_rows(rec))]
    return "\n".join(parts)


def op_share_plot(op_timing: dict) -> bytes | None:
    """Horizontal bars: each operator's p50 cycles, labelled with its share."""
    ops = op_timing.get("ops") or []
    if not ops:
        return None
    from deploykit.report.plots import _png, _pyplot
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(ops) + 1))
    labels = [f"#{o['index']} {o['op']}" for o in ops]
    ax.barh(labels, [o["cycles_p50"] for o in ops])
    for y, o in enumerate(ops):
        ax.text(o["cycles_p50"], y, f" {o['share']:.0%}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cycles p50" + (" (simulated)" if op_timing.get("simulated") else ""))
    ax.set_title("cycles per operator")
    return _png(fig)
