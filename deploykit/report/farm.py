"""The farm parts of a report: per place figures side by side, and the board-kind matrix.

report.json of a farm run is a HIL report (every key of report/build.py, over the whole
set) plus `farm`: {board, places: [{place, url, board, samples, measured, failed, faults,
latency: {us, round_trip_us}}], failed: [{place, error}]}. A --matrix run writes one such
report per kind in DIR/<kind>/ and DIR/report.* with `matrix`: kind -> headline figures.
"""

from __future__ import annotations

import html
from pathlib import Path

from deploykit.atomic import write_json, write_text
from deploykit.report.html import _table as html_table
from deploykit.report.markdown import _table as md_table, render_markdown
from deploykit.report.stats import distribution
from deploykit.report.write import write_reports

STATS = ["mean", "p50", "p90", "p99", "max", "stdev"]
MATRIX_SCHEMA = "deploykit.farm-matrix/1"


def place_summary(place, measured: int, error: str | None, faults: dict, rows: list[dict]) -> dict:
    """One place's line: its rows over the whole set (resumed ones too) and how it fared."""
    mine = [r for r in rows if r.get("place") == place.name and "error" not in r]
    return {"place": place.name, "url": place.url, "board": place.board,
            "samples": len(mine), "measured": measured, "failed": error, "faults": faults,
            "latency": {"us": distribution(r["us"] for r in mine),
                        "round_trip_us": distribution(r.get("round_trip_us") for r in mine)}}


def farm_tables(report: dict) -> dict:
    """title -> (header, rows): places, and latency per place side by side."""
    farm = report.get("farm") or {}
    places = farm.get("places") or []
    tables = {"Places": (["place", "board", "url", "samples", "failed"],
                         [[p["place"], p["board"], p["url"], p["samples"], p["failed"] or "no"] for p in places])}
    for figure in ("us", "round_trip_us"):
        title = f"Latency per place ({figure}{', simulated' if report.get('simulated') else ''})"
        tables[title] = (["figure"] + [p["place"] for p in places],
                         [[k] + [((p["latency"].get(figure) or {}).get(k)) for p in places] for k in STATS])
    return tables


def write_farm_reports(report: dict, outdir: Path, junit=None) -> dict:
    """The HIL report files with the farm tables added to report.md and report.html."""
    paths = write_reports(report, outdir, junit)
    tables = farm_tables(report)
    _add_tables(paths, report, tables)
    return paths


def _add_tables(paths: dict, report: dict, tables: dict) -> None:
    failed = (report.get("farm") or {}).get("failed") or []
    note = ["", "## Farm", ""] + [f"- place {f['place']} failed: {f['error']}; its samples were finished "
                                  "by the others" for f in failed] + [""]
    md = render_markdown(report) + "\n".join(note)
    for title, (header, rows) in tables.items():
        md += "\n".join([f"### {title}", ""] + md_table(header, rows))
    write_text(paths["md"], md)
    page = Path(paths["html"]).read_text(encoding="utf-8")
    extra = "<h2>Farm</h2>" + "".join(f"<p>place {html.escape(f['place'])} failed: {html.escape(f['error'])}</p>"
                                      for f in failed)
    extra += "".join(f"<h3>{html.escape(t)}</h3>{html_table(h, r)}" for t, (h, r) in tables.items())
    write_text(paths["html"], page.replace("<h2>Plots</h2>", extra + "<h2>Plots</h2>", 1))


def headline(report: dict) -> dict:
    """The figures a matrix compares, one column per board kind."""
    agree = (report.get("agreement") or {}).get("tflm_host") or {}
    device_acc = (report.get("accuracy") or {}).get("device") or {}
    us = (report.get("latency") or {}).get("us") or {}
    return {"places": len((report.get("farm") or {}).get("places") or []), "samples": report.get("samples"),
            "samples_failed": report.get("samples_failed"), "exact_fraction": agree.get("exact_fraction"),
            "accuracy": device_acc.get("accuracy", device_acc.get("mae")),
            "latency_us_p50": us.get("p50"), "latency_us_p99": us.get("p99"),
            "arena_used": (report.get("arena") or {}).get("used"),
            "samples_per_s": (report.get("throughput") or {}).get("samples_per_s"),
            "passed": report.get("passed")}


def write_matrix_reports(reports: dict, manifest, inputs, outdir: Path, junit=None) -> dict:
    """DIR/report.json|md|html comparing board kinds column by column (each kind's own report beside)."""
    kinds = sorted(reports)
    columns = {k: headline(reports[k]) for k in kinds}
    report = {"schema": MATRIX_SCHEMA, "model": {"name": manifest["name"], "sha256": manifest.sha256},
              "data": {"sha256": inputs.sha256, "total": len(inputs)}, "matrix": columns,
              "reports": {k: str(Path(outdir) / k / "report.json") for k in kinds},
              "passed": all(reports[k].get("passed") for k in kinds)}
    keys = list(next(iter(columns.values())))
    table = (["figure"] + kinds, [[key] + [columns[k][key] for k in kinds] for key in keys])
    outdir = Path(outdir)
    paths = {"json": outdir / "report.json", "md": outdir / "report.md", "html": outdir / "report.html"}
    report["files"] = {k: str(v) for k, v in paths.items()}
    write_json(paths["json"], report)
    title = f"Board kinds compared: {manifest['name']}"
    write_text(paths["md"], "\n".join([f"# {title}", ""] + md_table(*table)))
    write_text(paths["html"], f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
               f"</title></head><body><h1>{html.escape(title)}</h1>{html_table(*table)}</body></html>")
    return report
