"""The report at a glance: fit against the board, per-class table with names, versions and
run, numbers with units and percentages, plots with units, the round trip explained, no
single-bar histogram; and report.html rendered by a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_report import sample_report

from deploykit.firmware.boards import load_board
from deploykit.report import units
from deploykit.report.context import add_context, fit, per_class
from deploykit.report.html import render_html
from deploykit.report.markdown import render_markdown

# ----------------------------------------------------------------------------- units

def test_percentages_times_and_sizes_read_as_an_engineer_writes_them():
    assert units.pct(1) == "100 %" and units.pct(0.8) == "80 %" and units.pct(0.9375) == "93.8 %"
    assert units.pct(0.99996) == "99.996 %"   # never rounded up to a perfect score
    assert units.time_us(0.000452) == "0.452 ns" and units.time_us(0.5) == "500 ns"
    assert units.time_us(123.456) == "123 µs" and units.time_us(1234.5) == "1.23 ms"
    assert units.time_us(12.3456) == "12.3 µs" and units.time_us(2.5e6) == "2.50 s"
    assert units.cycles(123456.7) == "123,457 cycles"
    assert units.size(2048) == "2,048 B" and units.size(262144) == "262,144 B (256 KiB)"
    assert units.number(0.0123456) == "0.01235" and units.number(None) == "–"


def _hello(board="virtual", used=1800, configured=2048):
    return SimpleNamespace(board_id=board, arena_used=used, arena_configured=configured)


class _Manifest(SimpleNamespace):
    def __getitem__(self, key):
        return self.data[key]


def _manifest(**extra):
    data = {"model_bytes": 30000, "outputs": [{"dtype": "int8", "shape": [1, 2], "scale": 0.1}], **extra}
    return _Manifest(data=data)


# ----------------------------------------------------------------------------- fit

def test_fit_estimates_from_the_model_and_the_board_file_with_the_margin():
    board = load_board("virtual")
    got = fit(_manifest(), board, 1800, 2048, None)
    assert got["source"] == "estimate"
    assert got["flash"]["used"] == 30000 + board.runtime_flash_bytes and got["flash"]["limit"] == board.flash_bytes
    assert got["flash"]["margin"] == board.flash_bytes - 30000 - board.runtime_flash_bytes
    assert got["ram"]["used"] == 2048 + board.runtime_ram_bytes and got["ram"]["limit"] == board.ram_bytes
    assert "runtime" in got["basis"] and "virtual.toml" in got["basis"]


def test_fit_uses_the_build_sizes_and_shows_an_overflow(tmp_path):
    board = load_board("virtual")
    build = tmp_path / "build.json"
    build.write_text(json.dumps({"env": "x", "log": "l", "sizes": {
        "ram_used": board.ram_bytes + 1000, "ram_total": board.ram_bytes, "flash_used": 400000, "flash_total": 1}}))
    report = sample_report()
    add_context(report, _manifest(), _hello(), "virtual://m", build)
    assert report["fit"]["source"] == "build" and report["fit"]["flash"]["used"] == 400000
    assert report["fit"]["ram"]["margin"] == -1000
    md = render_markdown(report)
    assert "## Fit on virtual (PlatformIO build)" in md
    assert "| RAM | 263,144 B (257 KiB) | 262,144 B (256 KiB) | 100.4 % | OVER by 1,000 B (0.4 %) |" in md
    assert f"{board.flash_bytes - 400000:,} B" in md and "| tensor arena | 1,800 B |" in md


def test_a_board_without_a_file_has_no_fit_section_and_the_report_still_renders():
    report = sample_report()
    add_context(report, _manifest(), _hello("someone_elses_board"), "/dev/ttyUSB0")
    assert report["fit"] is None and report["versions"]["board_tflm_library"] is None
    md = render_markdown(report)
    assert "Fit on" not in md and "| board's TFLM library | – |" in md


# ----------------------------------------------------------------------------- classes, versions, run

def test_per_class_table_names_the_classes_and_the_confusion_too():
    report = sample_report()
    add_context(report, _manifest(class_names=["idle", "wing"]), _hello(), "/dev/ttyACM0")
    assert report["per_class"][0] == {"class": 0, "name": "idle", "samples": 3, "correct": 2,
                                      "recall": 2 / 3, "precision": 2 / 3}
    md = render_markdown(report)
    assert "| 0 | idle | 3 | 2 | 66.7 % | 66.7 % |" in md and "| 1 | wing | 2 | 1 | 50 % | 50 % |" in md
    assert "| true \\\\ pred | idle | wing |" in md and "| idle | 2 | 1 |" in md
    html = render_html(report, report.pop("_plot"))
    assert "<td>idle</td>" in html


def test_per_class_falls_back_to_indices_without_names():
    assert [c["name"] for c in per_class([[1, 0], [0, 1]], ["0", "1"])] == ["0", "1"]
    report = sample_report()
    add_context(report, _manifest(class_names=["only one"]), _hello(), "p")  # wrong count: ignored
    assert report["classes"] == ["0", "1"]


def test_versions_time_host_and_port_are_in_both_reports():
    report = sample_report()
    report["started_at"], report["duration_s"] = "2026-11-30T17:00:00", 12.5
    add_context(report, _manifest(tools={"tensorflow": "2.99.0"}), _hello("nano33ble_sense"), "/dev/ttyACM0")
    report["host"]["utc_offset"] = "+0100"
    versions = report["versions"]
    assert versions["tensorflow"] == "2.99.0"  # as recorded at convert time, not what is installed now
    assert versions["tflite_micro"] == metadata.version("tflite-micro")
    assert versions["board_tflm_library"] == load_board("nano33ble_sense").lib_deps[0]
    md = render_markdown(report)
    for text in ("| TensorFlow (convert) | 2.99.0 |", "| port | /dev/ttyACM0 |",
                 "| started at | 2026-11-30T17:00:00 (UTC+01:00) |",
                 "| duration | 12.5 s |",
                 f"| deploykit | {versions['deploykit']} |", "Chirale"):
        assert text in md
    assert "/dev/ttyACM0" in render_html(report, {})


def test_convert_records_tool_versions_and_class_names(converted_examples):
    gestures = converted_examples["gestures"]
    from deploykit.versions import package_version
    assert gestures["tools"]["tensorflow"] == package_version("tensorflow", "tensorflow-cpu") is not None
    assert gestures["class_names"] == ["idle", "wing", "ring", "slope"]
    assert converted_examples["sine"].data.get("class_names") is None


def test_deploy_hands_the_build_sizes_of_the_flashed_firmware_to_the_report(tmp_path):
    from deploykit.deploy import _built_sizes
    (tmp_path / "build.json").write_text("{}")
    assert _built_sizes(SimpleNamespace(build={"env": "x"}, project_dir=tmp_path)) == tmp_path / "build.json"
    assert _built_sizes(SimpleNamespace(build=None, project_dir=tmp_path)) is None  # virtual: not built


# ----------------------------------------------------------------------------- numbers and notes

def test_figures_carry_units_and_percentages():
    report = sample_report()
    report["accuracy"]["device"]["accuracy"] = 1.0
    md = render_markdown(report)
    assert "| device | 100 % |" in md          # accuracy 100 %, not 1
    assert "| tflm_host | 80 % |" in md         # exact_fraction
    assert "| us | 292 µs | 120 µs |" in md and "| cycles | 292 cycles |" in md
    assert "2,048 B" in md
    assert "0.000452" not in md


def test_the_round_trip_is_explained_next_to_the_inference_time():
    report = sample_report()
    md, html = render_markdown(report), render_html(report, {})
    for text in (md, html):
        latency = text.index("Latency")
        note = text.index("the gap between the two is the link, not the model")
        assert latency < note < text.index("Arena")


def test_one_value_for_every_sample_is_said_not_drawn(monkeypatch):
    from deploykit.report import plots
    from deploykit.report.stats import distribution, histogram
    report = sample_report()
    report["latency"]["us"] = distribution([250, 250, 250, 250, 250])
    text = render_markdown(report)
    assert "Inference (us): every one of the 5 samples took 250 µs, so no histogram is drawn." in text
    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"png")
    plots.latency_plot(histogram(np.full(5, 250.0)), histogram(np.array([5, 6, 7, 8, 9.0])))
    inference, round_trip = figures[0].axes[:2]
    assert not inference.patches and "all 5 samples: 250 µs" in inference.texts[0].get_text()
    assert round_trip.patches and round_trip.get_xlabel() == "µs" and round_trip.get_ylabel() == "samples"


def test_the_scatter_says_int8_steps_and_the_confusion_names_classes(monkeypatch):
    from deploykit.report import plots
    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"png")
    report = sample_report()
    add_context(report, _manifest(class_names=["idle", "wing"]), _hello(), "p")
    render_html(report, report.pop("_plot"))
    confusion, scatter = figures[0].axes[0], figures[1].axes[0]
    assert scatter.get_xlabel() == "desktop (LiteRT) output (int8 steps)"
    assert scatter.get_ylabel() == "device output (int8 steps)"
    assert [t.get_text() for t in confusion.get_xticklabels()] == ["idle", "wing"]


# ----------------------------------------------------------------------------- a real browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def gestures_report(converted_examples, tmp_path_factory) -> Path:
    """report.html of a quick run of the gestures example on the virtual board."""
    from deploykit.harness.run import run_hil
    manifest = converted_examples["gestures"]
    out = tmp_path_factory.mktemp("gestures-report")
    report = run_hil(manifest.path, f"virtual://{manifest.path}?pacing=0", limit=60, warmup=1,
                     outdir=out)
    assert report["samples"] == 60 and report["fit"]["source"] == "estimate"
    return out / "report.html"


def _browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install -y chromium chromium-driver; .ci/run does)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    from selenium import webdriver  # in the [test] extra
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="report14-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=1200,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options), profile


@pytest.mark.slow
def test_report_html_renders_in_a_real_browser(gestures_report):
    md = gestures_report.with_name("report.md").read_text()
    assert "| 0 | idle |" in md and "Fit on virtual (estimate)" in md
    driver, profile = _browser()
    try:
        driver.get(gestures_report.as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
        assert len(images) == 4 and all(done and width > 0 for _, done, width in images), images
        overflowing = driver.execute_script("""
            const out = [];
            for (const c of document.querySelectorAll('td, th'))
              if (c.scrollWidth > c.clientWidth) out.push(c.textContent);
            const page = document.body.clientWidth;
            for (const t of document.querySelectorAll('table'))
              if (t.getBoundingClientRect().width > page + 1) out.push('table wider than the page: ' +
                  (t.previousElementSibling || {}).textContent);
            return out;""")
        assert overflowing == []
        text = driver.find_element("tag name", "body").text
        assert "idle" in text
        assert "%" in text and "µs" in text
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
