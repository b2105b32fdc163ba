"""`deploykit deploy`: the whole pipeline on the virtual board, and a mocked real-board run.

Nothing inside the pipeline is faked: convert, render, the virtual board (real TFLM
kernels on a real pty) and the harness run for real. Only PlatformIO (replayed from
captured output) and pyserial's port list (the USB bus) are mocked, at their edges.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_cli
from serial.tools.list_ports_common import ListPortInfo
from test_pio_fakes import install

from deploykit.virtual_board import VirtualBoard


@pytest.fixture
def no_boards(mocker):
    return mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=[])


@pytest.mark.parametrize("example", ["sine", "linear", "gestures"])
@pytest.mark.slow
def test_deploy_virtual_end_to_end(example, example_files, tmp_path, capsys, no_boards):
    files, out = example_files[example], tmp_path / "out"
    code = run_cli(["deploy", str(files["model"]), "--board", "virtual", "--profile", "nano33ble_sense",
                    "--data", str(files["test_data"]), "--rep-data", str(files["rep_data"]),
                    "-o", str(out), "--limit", "40", "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    record = json.loads((out / "deploy.json").read_text())
    assert record["virtual_board"] is True and record["board"] == "nano33ble_sense"
    assert record["timings_s"]["build"] == "skipped" and record["timings_s"]["flash"] == "skipped"
    assert record["timings_s"]["convert"] > 0 and record["passed"] is True
    report = json.loads((out / "hil" / "report.json").read_text())
    assert report["samples"] == 40 and report["simulated"] is True
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert (out / "model" / "manifest.json").is_file() and (out / "firmware" / "platformio.ini").is_file()
    assert (out / "hil" / "report.html").is_file()
    assert "100.0% exact" in stdout and "PASS" in stdout and f"report: {out / 'hil' / 'report.html'}" in stdout


def test_no_board_connected_means_virtual_and_says_so(sine_manifest, tmp_path, capsys, no_boards, monkeypatch):
    """At a terminal (see test_exit_codes.py for CI, --quiet and no terminal: exit 3)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("deploykit.commands.deploy._isatty", lambda stream: True)
    out = tmp_path / "out"
    assert run_cli(["deploy", str(sine_manifest.path), "-o", str(out), "--limit", "10"]) == 0
    captured = capsys.readouterr()
    assert "no board connected: using the virtual board" in captured.err
    assert "virtual board (virtual profile)" in captured.out
    assert json.loads((out / "deploy.json").read_text())["timings_s"]["convert"] == "skipped"


def test_mocked_real_board_builds_flashes_and_tests(mocker, sine_manifest, tmp_path, capsys):
    out = tmp_path / "out"
    with VirtualBoard(sine_manifest.path, board="nano33ble_sense") as port:
        info = ListPortInfo(port, skip_link_detection=True)
        info.vid, info.pid = 0x2341, 0x805A
        mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=[info])
        fake = install(mocker).then("build_success.txt", 0).then("upload_success_disk.txt", 0)
        code = run_cli(["deploy", str(sine_manifest.path), "--board", "nano33ble_sense",
                        "--min-agreement", "0.99", "-o", str(out), "--limit", "20", "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert [c[c.index("run"):][:4] for c in fake.calls] == [["run", "-e", "nano33ble_sense", "-d"],
                                                            ["run", "-e", "nano33ble_sense", "-t"]]
    record = json.loads((out / "deploy.json").read_text())
    assert record["fit"]["source"] == "PlatformIO build" and record["fit"]["ram_used"] == 49172
    assert record["flash"]["hello"]["model_sha256"] == sine_manifest.sha256
    assert record["port"] == port and record["passed"] is True
    assert record["summary"]["passed"] is True and record["summary"]["exact_fraction"] >= 0.99
    assert "  fit: flash 2,556/983,040 B (0%), RAM 49,172/262,144 B (19%)" in stdout  # the summary's rows
    assert f"  target: nano33ble_sense on {port}\n" in stdout and "  result: PASS" in stdout
    assert (out / "firmware" / "build.log").is_file() and (out / "firmware" / "upload.log").is_file()


def test_failed_threshold_exits_1_with_the_table(sine_manifest, tmp_path, capsys, no_boards):
    code = run_cli(["deploy", str(sine_manifest.path), "--board", "virtual", "--max-latency-us", "1",
                    "-o", str(tmp_path / "out"), "--limit", "10", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and "FAIL" in captured.out and "HIL run failed" in captured.err


def test_virtual_board_gets_the_rendered_arena_and_fails_as_the_firmware_would(sine_manifest, tmp_path,
                                                                              capsys, no_boards):
    """--arena-size too small: the rendered firmware's AllocateTensors fails, so every sample does."""
    out = tmp_path / "out"
    code = run_cli(["deploy", str(sine_manifest.path), "--board", "virtual", "--arena-size", "64",
                    "-o", str(out), "--limit", "5", "--quiet"])
    captured = capsys.readouterr()
    assert code == 3 and "no sample ran" in captured.err and "FAIL" in captured.out  # the device, not a threshold
    report = json.loads((out / "hil" / "report.json").read_text())
    assert report["arena"]["configured"] == 64 and report["arena"]["used"] == 0
    assert report["samples"] == 0 and report["samples_failed"] == 5 and report["passed"] is False
    assert any("AllocateTensors failed with a 64-byte arena" in line for line in report["device_log"])


def test_build_failure_stops_the_pipeline_with_the_reason(mocker, sine_manifest, tmp_path, capsys):
    install(mocker).then("build_ram_overflow.txt", 1)
    out = tmp_path / "out"
    master, slave = os.openpty()  # deploy opens a given --port before building: one that exists
    try:
        code = run_cli(["deploy", str(sine_manifest.path), "--board", "nano33ble_sense", "--port",
                        os.ttyname(slave), "-o", str(out), "--quiet"])
    finally:
        os.close(master), os.close(slave)
    err = capsys.readouterr().err
    assert code == 1 and "RAM overflowed by 37888 bytes" in err and "Traceback" not in err
    assert (out / "firmware" / "build.log").is_file() and not (out / "deploy.json").exists()


@pytest.mark.parametrize("args, expect", [
    (["missing.keras", "--board", "virtual"], "model missing.keras does not exist"),
    (["MODEL", "--board", "nosuchboard"], "unknown board 'nosuchboard'"),
    (["MODEL", "--board", "virtual", "--data", "nodata.npz"], "--data nodata.npz does not exist"),
    (["MODEL", "--port", "/dev/ttyACM0"], "--port /dev/ttyACM0 needs --board"),
    (["MODEL", "--board", "virtual", "--profile", "nosuchboard"], "unknown board 'nosuchboard'"),
    (["MODEL", "--board", "virtual", "--limit", "-1"], "--limit -1 must be at least 1"),
    (["MODEL", "--board", "virtual", "--min-agreement", "2"], "--min-agreement 2.0 is not usable"),
    (["MODEL", "--board", "virtual", "--arena-size", "-16"], "--arena-size must be a positive"),
])
def test_bad_input_one_line_exit_2_nothing_written(sine_manifest, tmp_path, capsys, no_boards, args, expect):
    out = tmp_path / "out"
    args = [str(sine_manifest.path) if a == "MODEL" else a for a in args]
    assert run_cli(["deploy", *args, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
