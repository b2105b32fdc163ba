"""Exit statuses CI can act on, and a deploy that never passes on the virtual board by accident.

0 passed, 1 a threshold failed, 2 bad input, 3 the rig failed, 130 interrupted (results
kept). The interrupt tests run the real CLI in a subprocess against the virtual board
(`virtual://`, real TFLM kernels) and send it a real signal; the deploy tests mock only
the USB bus (no board connected) and, for the interactive case, the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_boards(mocker):
    return mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=[])


def at_a_terminal(monkeypatch, yes: bool = True):
    """stdin and stdout are (or are not) ttys: the one edge of "is a person watching"."""
    monkeypatch.setattr("deploykit.commands.deploy._isatty", lambda stream: yes)


@pytest.fixture
def terminal(monkeypatch):
    """A person at a terminal: stdin and stdout are ttys, no CI variable."""
    monkeypatch.delenv("CI", raising=False)
    at_a_terminal(monkeypatch)


# ----------------------------------------------------------------------------- deploy, no board

@pytest.mark.parametrize("how", ["CI", "quiet", "no terminal"])
def test_deploy_without_a_board_in_ci_fails_as_the_rig(sine_manifest, tmp_path, capsys, no_boards,
                                                       monkeypatch, how):
    """Before: `deploy --quiet` in CI with no board quietly used the virtual board and printed PASS."""
    at_a_terminal(monkeypatch, how != "no terminal")
    monkeypatch.delenv("CI", raising=False)
    if how == "CI":
        monkeypatch.setenv("CI", "true")
    out = tmp_path / "out"
    args = ["deploy", str(sine_manifest.path), "-o", str(out), "--limit", "5"]
    code = run_cli(args + (["--quiet"] if how == "quiet" else []))
    captured = capsys.readouterr()
    assert code == 3, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no board connected" in lines[0] and "--port virtual" in lines[0]
    assert "PASS" not in captured.out and not out.exists()


def test_interactive_deploy_falls_back_and_says_so_everywhere(sine_manifest, tmp_path, capsys, no_boards,
                                                              terminal, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the summary table unwrapped
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    code = run_cli(["deploy", str(sine_manifest.path), "-o", str(out), "--limit", "10", "--junit", str(junit)])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "no board connected: using the virtual board" in captured.err
    assert "virtual board (virtual profile), standing in: no board connected" in captured.out  # summary
    record = json.loads((out / "deploy.json").read_text())
    assert record["virtual_board"] is True and record["fallback"] is True
    title = (out / "hil" / "report.md").read_text().splitlines()[0]
    assert title.startswith("# HIL report: sine on virtual (virtual board standing in: no board connected)")
    assert "virtual board standing in" in (out / "hil" / "report.html").read_text().split("</h1>")[0]
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props["note"] == "virtual board standing in: no board connected"
    run_case = next(c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name") == "run completed")
    assert run_case.find("system-out").text.startswith("virtual board standing in")


@pytest.mark.parametrize("args, profile", [
    (["--port", "virtual", "--board", "nano33ble_sense"], "nano33ble_sense"),
    (["--port", "virtual", "--profile", "nano33ble_sense"], "nano33ble_sense"),
    (["--board", "virtual", "--profile", "nano33ble_sense"], "nano33ble_sense"),  # the old spelling
])
def test_virtual_board_when_asked_for_passes_in_ci(sine_manifest, tmp_path, capsys, no_boards, monkeypatch,
                                                   args, profile):
    monkeypatch.setenv("CI", "true")
    out = tmp_path / "out"
    code = run_cli(["deploy", str(sine_manifest.path), *args, "-o", str(out), "--limit", "5", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured
    record = json.loads((out / "deploy.json").read_text())
    assert (record["virtual_board"], record["fallback"], record["board"]) == (True, False, profile)
    assert "standing in" not in (out / "hil" / "report.md").read_text()


def test_two_boards_for_the_virtual_board_is_bad_input(sine_manifest, tmp_path, capsys, no_boards):
    out = tmp_path / "out"
    code = run_cli(["deploy", str(sine_manifest.path), "--port", "virtual", "--board", "nano33ble_sense",
                    "--profile", "esp32dev", "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--board nano33ble_sense and --profile esp32dev" in err and not out.exists()


def test_named_board_not_connected_is_the_rig(sine_manifest, tmp_path, capsys, no_boards):
    out = tmp_path / "out"
    code = run_cli(["deploy", str(sine_manifest.path), "--board", "teensy41", "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and "no connected serial port matches a teensy41 board" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


# ----------------------------------------------------------------------------- interrupts

def _hil_cli(manifest, outdir: Path, faults: str) -> list[str]:
    url = f"virtual://{manifest.path}?board=nano33ble_sense&faults={faults}"
    return [sys.executable, "-m", "deploykit", "hil", "run", "-m", str(manifest.path), "-p", url,
            "--board", "nano33ble_sense", "--limit", "80", "-o", str(outdir), "--quiet"]


def _rows(path: Path) -> list[dict]:
    """Every line of results.jsonl, each of which must be whole JSON."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _wait_for_rows(path: Path, proc, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and path.read_text(encoding="utf-8").count("\n") > n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} rows in {path} within {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_exits_130_and_keeps_whole_results(sine_manifest, tmp_path, sig):
    """A real `deploykit hil run` on virtual://, signalled before the device stalls at record 60.

    Before: SIGTERM killed the process (status -15, never 130). After: the run unwinds,
    results.jsonl holds whole lines only, and running again resumes and completes."""
    outdir = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(_hil_cli(sine_manifest, outdir, "stall=60:60"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(outdir / "results.jsonl", proc, 10)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted" in err and "Traceback" not in err
    rows = _rows(outdir / "results.jsonl")[1:]  # after the header
    kept = {r["index"] for r in rows}
    assert 10 <= len(kept) <= 60 and all("outputs" in r for r in rows)
    if sig != signal.SIGTERM:  # the resume is the same for both; run it once
        return
    done = subprocess.run(_hil_cli(sine_manifest, outdir, ""), env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((outdir / "report.json").read_text())
    assert report["samples"] == 80 and report["resumed_samples"] == len(kept)


# ----------------------------------------------------------------------------- hil run

def test_hil_run_port_auto_with_no_board_is_the_rig(sine_manifest, tmp_path, capsys, no_boards):
    """Before: exit 2, as if the command line were wrong; a missing board is the rig's state."""
    code = run_cli(["hil", "run", "-m", str(sine_manifest.path), "-p", "auto", "-o", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and "no connected serial port matches a known board" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_hil_run_where_no_sample_ran_is_the_rig_not_a_threshold(sine_manifest, tmp_path, capsys):
    """A board whose every inference fails (its arena is too small) measured nothing: exit 3,
    where before it was 1 like a missed threshold; junit.xml says so as an error."""
    from deploykit.virtual_board import VirtualBoard
    junit = tmp_path / "junit.xml"
    with VirtualBoard(sine_manifest.path, board="nano33ble_sense", arena_configured=64) as port:
        code = run_cli(["hil", "run", "-m", str(sine_manifest.path), "-p", port, "--limit", "5",
                        "--min-agreement", "0.5", "-o", str(tmp_path / "r"), "--junit", str(junit), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and "no sample produced a result" in err and len(err.strip().splitlines()) == 1
    run_case = next(c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name") == "run completed")
    assert run_case.find("error") is not None and run_case.find("error").get("type") == "rig"


@pytest.mark.slow
def test_a_disk_that_refuses_a_write_is_the_rig_in_one_line(sine_manifest, tmp_path):
    """A real write failure (RLIMIT_FSIZE: the kernel refuses report.html with EFBIG, as a
    full disk refuses with ENOSPC) in a real `hil run`: before, a traceback and exit 1."""
    import resource

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    outdir = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    url = f"virtual://{sine_manifest.path}?pacing=0"
    done = subprocess.run([sys.executable, "-m", "deploykit", "hil", "run", "-m", str(sine_manifest.path),
                           "-p", url, "--limit", "40", "-o", str(outdir), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stderr
    assert len(lines) == 1 and "File too large" in lines[0] and "Traceback" not in done.stderr
    assert len(_rows(outdir / "results.jsonl")) == 41  # the header and every sample, whole
    leftovers = [p.name for p in outdir.iterdir() if p.name.startswith(".") and p.name != ".deploykit.lock"]
    assert not leftovers  # no temp file left (the folder's lock file is deploykit's own, kept)


def test_every_rig_failure_is_caught_as_a_rig_error():
    """One RigError class: `except RigError` catches the device, tool, disk and no-board failures.

    errors.py once defined RigError twice; the second rebound the name, so DeviceError and its
    siblings no longer derived from the RigError that callers import."""
    from deploykit import errors
    for cls in (errors.DeviceError, errors.ToolError, errors.DiskError, errors.NoBoardFound):
        assert issubclass(cls, errors.RigError), cls
        assert cls.exit_code == errors.RigError.exit_code == 3
