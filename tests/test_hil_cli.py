"""`deploykit hil run` from the command line: thresholds, JUnit, HTML, bad input (exit 2)."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from deploykit.cli import main


def cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def virtual(manifest, **opts) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"pacing": 0, **opts}.items())
    return f"virtual://{manifest.path}?{query}"


def test_thresholds_pass_with_junit_and_html(sine_manifest, tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--limit", "100", "-o", str(tmp_path / "r"), "--junit", str(junit), "--quiet",
                          "--min-agreement", "0.99", "--max-latency-us", "100000", "--max-arena", "1000000"], capsys)
    assert code == 0, err
    assert "100 samples" in out and "report.html" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"  # 3 thresholds + run completed
    assert len(suite.findall("testcase")) == 4
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "<script" not in html
    # self-contained: nothing fetched from the network (the board's library URL shows as text)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "@import" not in html
    assert "agreement" in (tmp_path / "r" / "report.md").read_text().lower()


def test_failed_threshold_exits_1_and_names_it(sine_manifest, tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--limit", "50", "-o", str(tmp_path / "r"), "--junit", str(junit), "--quiet",
                          "--min-agreement", "0.5", "--max-arena", "100"], capsys)
    assert code == 1
    assert "arena.used" in err and "<= 100" in err
    suite = ET.parse(junit).getroot().find("testsuite")
    failures = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert suite.get("tests") == "3" and len(failures) == 1 and "max_arena" in failures[0].get("name")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["passed"] is False


def assert_bad_input(code, out, err, tmp_path, needle):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_data_that_does_not_fit_the_input(sine_manifest, tmp_path, capsys):
    np.savez(tmp_path / "wide.npz", x=np.zeros((10, 5), np.float32))
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--data", str(tmp_path / "wide.npz"), "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, "wants [1]")


def test_manifest_without_its_model(sine_manifest, tmp_path, capsys):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(sine_manifest.path, lonely / "manifest.json")
    code, out, err = cli(["hil", "run", "--manifest", str(lonely / "manifest.json"), "--port",
                          virtual(sine_manifest), "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, "is missing")


def test_port_that_does_not_exist(sine_manifest, tmp_path, capsys):
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port",
                          str(tmp_path / "ttyACM9"), "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, "does not exist")


def test_bad_limit(sine_manifest, tmp_path, capsys):
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--limit", "0", "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, "--limit 0")


def test_stale_firmware_exits_with_both_hashes(converted_examples, tmp_path, capsys):
    sine, linear = converted_examples["sine"], converted_examples["linear"]
    code, out, err = cli(["hil", "run", "--manifest", str(sine.path), "--port", virtual(linear),
                          "-o", str(tmp_path / "r")], capsys)
    assert code == 3 and sine.sha256 in err and linear.sha256 in err  # the rig: wrong firmware
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--min-agreement", "1.5"), ("--min-agreement", "nan"),
                                         ("--max-latency-us", "-5"), ("--max-arena", "0")])
def test_threshold_no_run_could_meet(sine_manifest, tmp_path, capsys, flag, value):
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          flag, value, "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, f"{flag} {value}")


@pytest.mark.parametrize("baud", ["0", "-5"])
def test_bad_baud(sine_manifest, tmp_path, capsys, baud):
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--baud", baud, "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, f"--baud {baud}")


def test_unknown_board(sine_manifest, tmp_path, capsys):
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--board", "nope", "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, "unknown board 'nope'")


def test_device_of_another_board_is_refused(sine_manifest, tmp_path, capsys):
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path),
                          "--port", virtual(sine_manifest, board="nano33ble_sense"), "--board", "esp32dev",
                          "-o", str(tmp_path / "r")], capsys)
    assert code == 3 and "'nano33ble_sense', not 'esp32dev'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_board_sets_the_default_baud(sine_manifest, tmp_path, capsys, monkeypatch):
    """Every board file says 115200 today, so one is given another rate for this test."""
    import dataclasses

    from deploykit.firmware import boards
    real = boards.load_board
    monkeypatch.setattr(boards, "load_board", lambda board_id, directory=None: dataclasses.replace(
        real(board_id, directory), baud=230400) if board_id == "esp32dev" else real(board_id, directory))
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--limit", "10",
                          "--port", virtual(sine_manifest, board="esp32dev"), "--board", "esp32dev",
                          "-o", str(tmp_path / "r"), "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["device"]["board_id"] == "esp32dev" and report["throughput"]["baud"] == 230400


def test_junit_path_that_cannot_be_written(sine_manifest, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, out, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                          "--junit", str(tmp_path / "afile" / "junit.xml"), "-o", str(tmp_path / "r")], capsys)
    assert_bad_input(code, out, err, tmp_path, "cannot write --junit")


# slow: three runs; the fast loop keeps resuming by default (test_resumed_run_says_so_in_the_summary_and_every_report)
# and --no-resume from the command line (test_run_on_another_board_into_a_finished_folder_is_refused)
@pytest.mark.slow
def test_resume_is_the_default_and_no_resume_starts_afresh(sine_manifest, tmp_path, capsys):
    args = ["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
            "--limit", "10", "-o", str(tmp_path / "r"), "--quiet"]
    resumed = []
    for extra in ([], [], ["--no-resume"]):
        code, out, err = cli(args + extra, capsys)
        assert code == 0, err
        resumed.append(json.loads((tmp_path / "r" / "report.json").read_text())["resumed_samples"])
        rows = (tmp_path / "r" / "results.jsonl").read_text().splitlines()[1:]
        assert sorted(json.loads(r)["index"] for r in rows) == list(range(10))
    assert resumed == [0, 10, 0]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_run_on_another_board_into_a_finished_folder_is_refused(sine_manifest, tmp_path, capsys):
    """A finished Nano run is never reported as esp32dev's; --no-resume starts afresh."""
    out = tmp_path / "r"
    base = ["hil", "run", "--manifest", str(sine_manifest.path), "--limit", "30", "-o", str(out), "--quiet"]
    code, _, err = cli(base + ["--port", virtual(sine_manifest, board="nano33ble_sense")], capsys)
    assert code == 0, err
    before = {name: (out / name).read_bytes() for name in ("results.jsonl", "report.json")}
    esp32 = ["--port", virtual(sine_manifest, board="esp32dev"), "--board", "esp32dev"]
    code, out_text, err = cli(base + esp32, capsys)
    assert code == 2 and out_text == ""
    line = one_error_line(err)
    assert "board 'nano33ble_sense' there, 'esp32dev' now" in line and "--no-resume" in line
    assert {name: (out / name).read_bytes() for name in before} == before
    code, _, err = cli(base + esp32 + ["--no-resume"], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["device"]["board_id"] == "esp32dev" and report["resumed_samples"] == 0
    assert report["samples"] == 30 and report["throughput"]["measured_samples"] == 30


def test_resumed_run_says_so_in_the_summary_and_every_report(sine_manifest, tmp_path, capsys):
    out = tmp_path / "r"
    base = ["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
            "-o", str(out), "--quiet"]
    code, text, err = cli(base + ["--limit", "10"], capsys)
    assert code == 0 and "resumed:" not in text and "resumed:" not in (out / "report.md").read_text()
    started = json.loads((out / "results.jsonl").read_text().splitlines()[0])["started_at"]
    code, text, err = cli(base + ["--limit", "25"], capsys)
    assert code == 0, err
    said = f"10 of 25 samples from an earlier run at {started}"
    assert f"resumed: {said}" in text.splitlines()[1]
    report = json.loads((out / "report.json").read_text())
    assert report["resumed"] == {"samples": 10, "of": 25, "earlier_run_at": started}
    assert f"- resumed: {said}" in (out / "report.md").read_text()
    assert f"Resumed: {said}." in (out / "report.html").read_text()


@pytest.mark.slow
def test_second_run_into_a_busy_folder_fails_at_once(sine_manifest, tmp_path, capsys):
    """Two real runs into one folder: the second is refused (exit 2) and writes nothing.
    (Slow: a second Python process and a 9600-baud board, about 10 s.)"""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "r"
    slow = f"virtual://{sine_manifest.path}?baud=9600"
    first = subprocess.Popen([sys.executable, "-m", "deploykit", "hil", "run", "--manifest", str(sine_manifest.path),
                              "--port", slow, "-o", str(out), "--quiet", "--warmup", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        results = out / "results.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") > 20):
            time.sleep(0.05)
        code, text, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port",
                               virtual(sine_manifest), "-o", str(out), "--quiet"], capsys)
        assert first.poll() is None  # the first run was still going
        assert code == 2 and text == ""
        assert f"is in use by another run (pid {first.pid})" in one_error_line(err)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    indices = [json.loads(line)["index"] for line in results.read_text().splitlines()[1:]]
    assert len(indices) == len(set(indices)) and not (out / "report.json").exists()
    code, text, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port",
                           virtual(sine_manifest), "-o", str(out), "--quiet", "--warmup", "0"], capsys)
    assert code == 0, err  # the lock died with the killed run; this one resumes it
    rows = [json.loads(line)["index"] for line in results.read_text().splitlines()[1:]]
    assert sorted(rows) == list(range(1000))
    assert json.loads((out / "report.json").read_text())["resumed_samples"] == len(indices)


def test_full_disk_exits_3_in_one_line_and_the_run_resumes(sine_manifest, tmp_path, capsys, monkeypatch):
    from test_results import enospc_after
    out = tmp_path / "r"
    args = ["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
            "--limit", "200", "-o", str(out), "--quiet"]
    out.mkdir()
    enospc_after(monkeypatch, out / "results.jsonl", writes=1)
    code, text, err = cli(args, capsys)
    assert code == 3 and "no space left on the disk holding" in one_error_line(err)
    assert "OSError" not in err and not (out / "report.json").exists()
    lines = (out / "results.jsonl").read_text().splitlines()
    kept = [json.loads(line)["index"] for line in lines[1:]]  # every line whole
    assert 0 < len(kept) < 200
    monkeypatch.undo()
    code, text, err = cli(args, capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 200 and report["resumed_samples"] == len(kept)


def test_full_disk_while_writing_reports_exits_3(sine_manifest, tmp_path, capsys, monkeypatch):
    import errno
    import os

    from deploykit import atomic

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "write_bytes", full)
    code, text, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                           "--limit", "20", "-o", str(tmp_path / "r"), "--quiet"], capsys)
    assert code == 3 and "no space left on the disk holding" in one_error_line(err)
    assert not (tmp_path / "r" / "report.json").exists()


def test_results_link_pointing_out_of_the_folder_is_refused(sine_manifest, tmp_path, capsys):
    decoy = tmp_path / "decoy.jsonl"
    decoy.write_text("someone else's file\n")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.jsonl").symlink_to(decoy)
    for extra in ([], ["--no-resume"]):
        code, text, err = cli(["hil", "run", "--manifest", str(sine_manifest.path), "--port", virtual(sine_manifest),
                               "--limit", "10", "-o", str(tmp_path / "r"), "--quiet"] + extra, capsys)
        assert code == 2 and "is a symbolic link" in one_error_line(err)
        assert decoy.read_text() == "someone else's file\n"
