"""Write report.json, report.md, report.html (and junit.xml when asked), each atomically."""

from __future__ import annotations

import errno
from pathlib import Path

from deploykit.atomic import write_json, write_text
from deploykit.errors import DiskError
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
    _write(paths["json"], lambda p: write_json(p, report))
    _write(paths["md"], lambda p: write_text(p, render_markdown(report)))
    _write(paths["html"], lambda p: write_text(p, render_html(report, plot)))
    if junit:
        _write(paths["junit"], lambda p: _write_in_new_folder(p, render_junit(report)))
    return paths


def _write_in_new_folder(path: Path, text: str) -> None:
    """The JUnit file may go to a folder of its own (--junit DIR/x.xml) that does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def _write(path: Path, write) -> None:
    """Run `write(path)`; a full disk (or another OSError) is one line, exit 3."""
    try:
        write(path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskError(f"no space left on the disk holding {path}; free some space and run "
                            "again (the results are kept: the run resumes and only writes the reports)") from exc
        raise DiskError(f"cannot write {path}: {exc.strerror or exc}; check the disk and run again") from exc
