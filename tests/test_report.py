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
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "exact_fraction" in failure.get("message")


def test_simulated_latency_is_labelled_so():
    from deploykit.report.markdown import render_markdown
    report = sample_report()
    assert "## Latency\n" in render_markdown(report)
    report["simulated"] = True
    assert "## Latency (simulated (estimate): the board's per-operator cost model)\n" in render_markdown(report)
