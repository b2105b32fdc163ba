"""Report writers and thresholds on a hand-made report (no device needed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest

from deploykit.errors import BadInput
from deploykit.report import Thresholds, evaluate, write_reports
from deploykit.report.stats import distribution, histogram, recommended_arena, throughput


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
                  "us": histogram(np.array([100, 110, 120, 130, 1000.0])),
                  "round_trip_us": histogram(np.array([5, 6, 7, 8, 9.0]))},
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
    assert cases[0]["message"] == "agreement.tflm_host.exact_fraction = 0.8, required >= 0.9"
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
    assert "FAILED" in md and "| tflm_host | 80 % |" in md and "Confusion matrix" in md
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
    assert "## Latency (simulated (estimate): the board's per-operator cost model)\n" in render_markdown(report)


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
    assert props["model.name"] == "m\\x07<b>|*x*</b>\\x1b[31m_n_ & `tick`"
    assert props["device.board_id"] == "board\\x00id"


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

def synthetic_rows(n: int, fail_every: int = 97):
    """Rows as the harness writes them: int8 outputs, timings, some failures."""
    rng = np.random.default_rng(n)
    for i in range(n):
        if i % fail_every == 5:
            yield {"index": i, "error": "Invoke failed"}
        else:
            us = int(rng.integers(4000, 5000))
            yield {"index": i, "outputs": [[int(rng.integers(-128, 128))]], "cycles": us * 64, "us": us,
                   "round_trip_us": round(us + float(rng.random()) * 300, 1)}


SPEC = {"dtype": "int8", "shape": [1, 1], "scale": 0.01, "zero_point": -3}


def references(n: int) -> dict:
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, (n, 1)).astype(np.int8)
    return {"tflm_host": q, "desktop": q, "float": rng.random((n, 1)).astype(np.float32)}


def state_size(aggregator) -> int:
    """Bytes of everything the aggregator keeps, but the inputs it was given (refs, labels)."""
    import pickle
    return len(pickle.dumps({k: v for k, v in vars(aggregator).items() if k not in ("refs", "y")}))


def test_aggregator_state_does_not_grow_with_the_rows():
    from deploykit.report.aggregate import BLOCK, RowAggregator
    n_small, n_big = 3 * BLOCK, 30 * BLOCK  # both past the 100 failures listed
    refs, y = references(n_big), np.random.default_rng(2).random((n_big, 1)).astype(np.float32)
    sizes = []
    for n in (n_small, n_big):
        agg = RowAggregator(SPEC, refs, y, "regression")
        for row in synthetic_rows(n):
            agg.add(row)
        agg.finish()
        sizes.append(state_size(agg))
    assert sizes[1] <= sizes[0] + 64, sizes  # 10 times the rows, the same state (counters a digit longer)


def report_peak(tmp_path, n: int) -> int:
    """Peak bytes allocated (tracemalloc) while build_report reads n rows off disk."""
    import tracemalloc

    from deploykit.harness.inputs import RunInputs
    from deploykit.harness.results import Rows
    from deploykit.report import build_report
    path = tmp_path / f"results-{n}.jsonl"
    with open(path, "w") as fh:
        fh.write('{"schema":"deploykit.hil-results/2"}\n')
        for row in synthetic_rows(n):
            fh.write(json.dumps(row) + "\n")
    refs = references(n)
    inputs = RunInputs(x=np.zeros((n, 1), np.float32), x_model=np.zeros((n, 1), np.int8),
                       y=np.random.default_rng(3).random((n, 1)).astype(np.float32), path=path, sha256="cd" * 32)
    tracemalloc.start()
    try:
        report = build_report(manifest=FakeManifest(), inputs=inputs, rows=Rows(path, n), refs=refs,
                              hello=HELLO, faults={}, throughput={}, estimate=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["samples"] + report["samples_failed"] == n and len(report["failures"]) == 100
    return peak


@pytest.mark.slow  # 40,000 rows through build_report; the aggregator's bound: test_aggregator_state_does_not_grow
def test_report_from_rows_streamed_off_disk_holds_no_rows(tmp_path):
    """build_report over results.jsonl: each extra row costs far less than a row (~0.9 KB kept
    before); what grows is the latency columns the exact percentiles need (16 bytes)."""
    small, big = 10_000, 30_000
    per_row = (report_peak(tmp_path, big) - report_peak(tmp_path, small)) / (big - small)
    assert per_row < 64, f"{per_row:.0f} bytes per row"


class FakeManifest(dict):
    sha256 = "ab" * 32
    path = "manifest.json"
    data = {"task": "regression"}

    def __init__(self):
        super().__init__(name="sine", outputs=[SPEC])


HELLO = SimpleNamespace(board_id="virtual", model_sha256=b"\xab" * 32, cpu_hz=64_000_000,
                        timer=SimpleNamespace(name="CYCLES"), protocol_version=1, max_payload=256,
                        rx_window=512, simulated=True, arena_configured=2048, arena_used=1500)


def test_streamed_report_figures_equal_the_whole_array_ones():
    """Agreement, accuracy, percentiles and failures from rows one at a time equal those of
    deploykit.model.reference.agreement / metrics on whole arrays."""
    from deploykit.model import metrics
    from deploykit.model.quantization import to_float
    from deploykit.model.reference import agreement
    from deploykit.report.aggregate import RowAggregator, latency_columns
    n = 10_000
    rows = list(synthetic_rows(n))
    refs, y = references(n), np.random.default_rng(4).random((n, 1)).astype(np.float32)
    refs["desktop"] = refs["desktop"].copy()
    refs["desktop"][::7] += 1  # the desktop reference differs by one step now and then
    agg = RowAggregator(SPEC, refs, y, "regression")
    for i in np.random.default_rng(5).permutation(n):  # rows come in arrival order, not by index
        agg.add(rows[i])
    got = agg.finish()
    ok = [r for r in rows if "error" not in r]
    idx = np.array([r["index"] for r in ok])
    device = np.array([r["outputs"][0] for r in ok], np.int8)
    for name in ("tflm_host", "desktop"):
        want = agreement(device, refs[name][idx], SPEC["scale"], SPEC["zero_point"])
        assert got["agreement"][name] == pytest.approx(want, rel=1e-9)
    want = metrics.errors(to_float(device, SPEC), y[idx])
    assert got["accuracy"]["device"] == pytest.approx({"mae": want["mae"], "rmse": want["rmse"],
                                                       "max_error": want["max_abs"]}, rel=1e-9)
    assert [f["index"] for f in got["failures"]] == [i for i in range(n) if i % 97 == 5][:100]
    desktop_points, device_points = got["pairs"]  # the plot's points: the first 2000 samples
    assert np.array_equal(device_points, device[:2000, 0])
    assert np.array_equal(desktop_points, refs["desktop"][idx[:2000], 0])
    cols = latency_columns(rows, got["samples"])
    assert distribution(cols["us"]) == pytest.approx(distribution([r["us"] for r in ok]))
    assert distribution(cols["round_trip_us"]) == pytest.approx(distribution([r["round_trip_us"] for r in ok]))
