"""report.html: one self-contained file (tables and PNG plots embedded as base64)."""

from __future__ import annotations

import base64
import html

from deploykit.report import plots
from deploykit.report.markdown import _fmt, link_text, notes_for, resumed_line, section_rows

STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f4f4f4}.pass{color:#060}.fail{color:#b00;font-weight:bold}
img{max-width:100%;margin:.5em 1em .5em 0}
td,th{overflow-wrap:anywhere}td:first-child{text-align:left}code{overflow-wrap:anywhere}"""


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict, plot: dict) -> str:
    model, device = report.get("model", {}), report.get("device", {})
    passed = report.get("passed", True)
    verdict = f'<span class="{"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}</span>'
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>HIL report {html.escape(str(model.get('name')))}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>HIL report: {html.escape(str(model.get('name')))} on {html.escape(str(device.get('board_id')))}"
             f"{html.escape(' (' + report['note'] + ')') if report.get('note') else ''} — {verdict}</h1>",
             f"<p>{report['samples']} samples ({report.get('samples_failed', 0)} failed); simulated: "
             f"{_fmt(report['simulated'])}; link: {html.escape(link_text(report))}; "
             f"model sha256 <code>{html.escape(str(model.get('sha256')))}</code></p>"]
    if resumed_line(report):
        parts.append(f"<p>Resumed: {html.escape(resumed_line(report) or '')}.</p>")
    for title, (header, rows) in section_rows(report).items():
        parts.append(f"<h2>{html.escape(title)}</h2>{_table(header, rows)}")
        parts += [f"<p>{html.escape(note)}</p>" for note in notes_for(title, report)]
    parts.append("<h2>Plots</h2>")
    parts.append(_img(plots.confusion_plot(plot.get("confusion"), plot.get("class_names")), "confusion matrix"))
    scatter = plots.agreement_plot(plot.get("pairs"), plot.get("pairs_unit") or "int8 steps")
    parts.append(_img(scatter, "device versus desktop"))
    parts.append(_img(plots.latency_plot(plot.get("us"), plot.get("round_trip_us"),
                                         bool(report.get("simulated"))), "latency histogram"))
    parts.append(_img(plots.arena_plot(report.get("arena") or {}), "arena"))
    from deploykit.report.diagnostics import html_part
    parts.append(html_part(report))  # per-operator timing, layer diff (when asked for)
    parts.append("</body></html>")
    return "\n".join(parts)
