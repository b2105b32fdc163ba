"""Write report.json, report.md, report.html (and junit.xml when asked), each atomically."""

from __future__ import annotations

from pathlib import Path

from deploykit.atomic import write_json, write_text
from deploykit.report.html import render_html
from deploykit.report.junit import render_junit
from deploykit.report.markdown import render_markdown


def write_reports(report: dict, outdir: Path, junit: Path | None = None) -> dict:
    """Write the files; return {kind: path}. `report` may hold "_plot" (not written to JSON)."""
    outdir = Path(outdir)
    plot = report.pop("_plot", {}) or {}
    paths = {"json": outdir / "report.json", "md": outdir / "report.md", "html": outdir / "report.html"}
    if junit:
        paths["junit"] = Path(junit)
    report["files"] = {k: str(v) for k, v in paths.items()} | {"results": str(outdir / "results.jsonl")}
    write_json(paths["json"], report)
    write_text(paths["md"], render_markdown(report))
    write_text(paths["html"], render_html(report, plot))
    if junit:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        write_text(paths["junit"], render_junit(report))
    return paths
