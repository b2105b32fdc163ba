"""Report writers and thresholds on a hand-made report (no device needed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from deploykit.errors import BadInput
from deploykit.report.stats import distribution, recommended_arena, throughput
from deploykit.report import Thresholds, evaluate, write_reports


def sample_report() -> dict:
    lat = distribution([100, 110, 120, 130, 1000])
    return {
        "schema": "deploykit.hil-report/1", "samples": 5, "samples_failed": 0, "simulated": False,
        "device": {"board_id": "nano33ble_sense"}, "model": {"name": "m", "sha256": "ab" * 32},
        "data": {"path": "d.npz"},
        "agreement": {"tflm_host": {"exact_fraction": 0.8, "max_abs_steps": 1, "mean_abs_steps": 0.2,
                                    "mae": 0.01, "rmse": 0.02, "cosine": 0.99}},
        "accuracy": {"task": "classification",
                     "device": {"accuracy": 0.6, "confusion": [[2, 1], [1, 1]]}},
        "latency": {"cycles": lat, "us": lat, "round_trip_us": lat},
        "arena": {"configured": 2048, "used": 1800, "estimate": 1760, "recommended": recommended_arena(1800)},
        "throughput": throughput(5, 0.01, 115200, 1, 1),
        "faults": {"retries": 1, "crc_errors": 2, "resyncs": 0, "resets": 0, "reconnects": 0},
        "_plot": {"pairs": (np.arange(5.0), np.arange(5.0)), "confusion": [[2, 1], [1, 1]],
                  "us": [100, 110, 120, 130, 1000], "round_trip_us": [5, 6, 7, 8, 9]},
    }


def test_distribution_and_arena_figures():
    d = distribution([1, 2, 3, 4, 100])
    assert d["p50"] == 3 and d["max"] == 100 and d["mean"] == 22
    assert distribution([]) is None
    assert recommended_arena(1800) == 1984 and recommended_arena(1800) % 16 == 0
    t = throughput(5760, 1.0, 115200, 1, 1)
    assert t["wire_limit_samples_per_s"] == 5760 and t["link_efficiency"] == 1.0


def test_thresholds_each_become_a_case():
    report = sample_report()
    cases = evaluate(report, Thresholds(min_agreement=0.9, max_latency_us=2000, max_arena=1800))
    assert [(c["name"], c["passed"]) for c in cases] == [
        ("min_agreement", False), ("max_latency_us", True), ("max_arena", True)]
    assert "agreement.tflm_host.exact_fraction = 0.8, required >= 0.9" == cases[0]["message"]
    assert evaluate(report, Thresholds()) == []
    for bad in (dict(min_agreement=1.01), dict(min_agreement=-0.1), dict(max_latency_us=0),
                dict(max_latency_us=float("inf")), dict(max_arena=-1)):
        with pytest.raises(BadInput, match=next(iter(bad)).replace("_", "-")):
            Thresholds(**bad)
    report["agreement"] = {}
    assert evaluate(report, Thresholds(min_agreement=0.1))[0]["passed"] is False


def test_writers_produce_json_md_html_junit(tmp_path):
    report = sample_report()
    report["thresholds"] = evaluate(report, Thresholds(min_agreement=0.9, max_arena=4096))
    report["passed"] = False
    paths = write_reports(report, tmp_path, junit=tmp_path / "ci" / "junit.xml")
    saved = json.loads(paths["json"].read_text())
    assert "_plot" not in saved and saved["files"]["junit"].endswith("junit.xml")
    md = paths["md"].read_text()
    assert "FAILED" in md and "| tflm_host | 0.8 |" in md and "Confusion matrix" in md
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 4 and "FAILED" in html  # confusion, scatter, latency, arena
    assert "full duplex" in md and "full duplex" in html  # why link_efficiency may exceed 1
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"  # 2 thresholds + run completed
    failure = suite.find("testcase/failure")
    assert failure is not None and "exact_fraction" in failure.get("message")


def test_simulated_latency_is_labelled_so():
    from deploykit.report.markdown import render_markdown
    report = sample_report()
    assert "## Latency\n" in render_markdown(report)
    report["simulated"] = True
    assert "## Latency (simulated: the board's cost model)\n" in render_markdown(report)


# ----------------------------------------------------------------------------- JUnit and escaping

HOSTILE = "m\x07<b>|*x*</b>\x1b[31m_n_ & `tick`"  # a control character, markup, a pipe, an ANSI escape


def _junit(report: dict, tmp_path) -> ET.Element:
    from deploykit.report.junit import render_junit
    path = tmp_path / "junit.xml"
    path.write_text(render_junit(report), encoding="utf-8")
    return ET.parse(path).getroot().find("testsuite")  # raises ParseError on an XML-illegal character


def test_junit_parses_with_a_control_character_in_the_model_name(tmp_path):
    """Before: ElementTree wrote \\x07 raw and junit.xml could not be parsed."""
    report = sample_report()
    report["model"]["name"] = HOSTILE
    report["device"]["board_id"] = "board\x00id"
    report["thresholds"] = evaluate(report, Thresholds(min_agreement=0.5))
    suite = _junit(report, tmp_path)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["model.name"] == "m\\x07<b>|*x*</b>\\x1b[31m_n_ & `tick`" and props["device.board_id"] == "board\\x00id"


def test_junit_has_a_run_completed_case_every_figure_and_real_durations(tmp_path):
    report = sample_report()
    report["thresholds"] = evaluate(report, Thresholds(min_agreement=0.9, max_latency_us=2000))
    report["duration_s"], report["started_at"] = 12.5, "2026-11-30T16:00:00"
    suite = _junit(report, tmp_path)
    cases = suite.findall("testcase")
    assert [c.get("name").split(":")[0] for c in cases] == ["run completed", "min_agreement", "max_latency_us"]
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "0"
    assert suite.get("time") == "12.500" and cases[0].get("time") == "12.500"
    assert suite.get("timestamp") == "2026-11-30T16:00:00"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    for name, value in [("agreement.tflm_host.exact_fraction", "0.8"), ("agreement.tflm_host.max_abs_steps", "1"),
                        ("latency.us.p99", format(report["latency"]["us"]["p99"], ".6g")),
                        ("latency.cycles.mean", "292"), ("arena.used", "1800"), ("arena.recommended", "1984"),
                        ("throughput.samples_per_s", "500"), ("faults.crc_errors", "2"),
                        ("accuracy.device.accuracy", "0.6"), ("samples", "5"), ("simulated", "false")]:
        assert props.get(name) == value, (name, props.get(name))
    assert not any(k.startswith(("_plot", "files", "thresholds")) for k in props)


def test_junit_run_that_measured_nothing_is_an_error_not_a_pass(tmp_path):
    report = sample_report()
    report.update(samples=0, samples_failed=5, thresholds=[])
    suite = _junit(report, tmp_path)
    error = suite.find("testcase/error")
    assert suite.get("errors") == "1" and suite.get("tests") == "1"
    assert error is not None and error.get("type") == "rig" and "no sample produced a result" in error.get("message")


def test_report_md_shows_hostile_names_as_written(tmp_path):
    """Before: report.md carried a model name's markup raw (an <img>, a table-breaking pipe)."""
    from markdown_it import MarkdownIt
    from deploykit.report.markdown import render_markdown
    report = sample_report()
    report["model"]["name"] = "<img src=x onerror=alert(1)>|**bold**"
    report["device"]["board_id"] = "[link](http://x)"
    report["data"]["path"] = "d`a`ta.npz"
    report["device_log"] = ["line one\n# not a heading"]
    report["agreement"]["a|b"] = {"exact_fraction": 1.0}
    md = render_markdown(report)
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert not kinds & {"html_inline", "html_block", "strong_open", "link_open"}, kinds
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "&lt;img src=x onerror=alert(1)&gt;|**bold**" in html and "[link](http://x)" in html
    assert "<code>d`a`ta.npz</code>" in html
    assert md.count("\n# ") == 0 and "line one\\x0a# not a heading" in md
    table = md.split("## Agreement")[1].split("\n\n")[1].splitlines()  # every row keeps its columns
    assert len({line.replace("\\|", "").count("|") for line in table}) == 1, table


def test_report_html_escapes_hostile_names_and_carries_the_note():
    from deploykit.report.html import render_html
    report = sample_report()
    report.pop("_plot")
    report["model"]["name"] = "<img src=x onerror=alert(1)>"
    report["note"] = "virtual board standing in: no board connected"
    html = render_html(report, {})
    h1 = html.split("<h1>")[1].split("</h1>")[0]
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in h1
    assert "(virtual board standing in: no board connected)" in h1
