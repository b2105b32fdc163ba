"""The farm end to end on labgrid, on this machine (127.0.0.1 only).

A labgrid coordinator and two exporter hosts, each serving two virtual boards (ptys)
behind ser2net as NetworkSerialPort resources; four places tagged board=virtual;
`deploykit farm run --match board=virtual` over the four; one whole host (exporter,
ser2nets, boards) killed mid-run. Every sample exactly once, outputs equal to a single
board's, the failed places named, no place left acquired, every process stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("labgrid")

from deploykit.virtual_board.lab import Coordinator, Host, ser2net_binary  # noqa: E402

try:
    ser2net_binary()
except Exception:  # noqa: BLE001
    pytest.skip("ser2net is not installed (`apt-get install ser2net`)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 600


@pytest.fixture
def lab(sine_manifest, tmp_path):
    """Coordinator + hosts h1, h2 (two boards each) + places p-h1-b0 ... tagged board=virtual."""
    coord = Coordinator(tmp_path / "coordinator")
    hosts = [Host(name, tmp_path / name) for name in ("h1", "h2")]
    try:
        coord.start()
        for host in hosts:
            host.add_boards(sine_manifest, 2, baud=9600)
            host.start_exporter(coord.address)
            for board in host.boards:
                coord.create_place(f"p-{board['name']}", [f"{host.name}/{board['name']}/NetworkSerialPort"],
                                   {"board": "virtual"})
        _wait(lambda: coord.client("resources").stdout.count("NetworkSerialPort") >= 4, "the exporters' ports")
        yield coord, hosts
    finally:
        for host in hosts:
            host.stop()
        coord.stop()
    for proc in [p for h in hosts for p in h.procs] + coord.host.procs:
        assert proc.poll() is not None   # everything it started is stopped


def _wait(check, what, within=30.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


@pytest.mark.slow
def test_farm_over_four_labgrid_places_survives_a_host_going_down(lab, sine_manifest, tmp_path):
    from deploykit.harness.run import run_hil
    coord, (h1, h2) = lab
    run_hil(sine_manifest.path, f"virtual://{sine_manifest.path}?pacing=0", outdir=tmp_path / "single",
            float_reference=False, limit=SAMPLES)
    single = {r["index"]: r["outputs"] for r in rows(tmp_path / "single" / "results.jsonl")}

    out = tmp_path / "farm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "farm", "run", "-m", str(sine_manifest.path), "--match", "board=virtual",
         "--coordinator", coord.address, "--limit", str(SAMPLES), "--baud", "9600", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait(lambda: (out / "results.jsonl").exists() and len(rows(out / "results.jsonl")) > 60, "rows", 60)
        h2.kill()                                            # a whole exporter host goes down mid-run
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    got = rows(out / "results.jsonl")
    assert sorted(r["index"] for r in got) == list(range(SAMPLES))      # every sample exactly once
    assert {r["index"]: r["outputs"] for r in got} == single          # as one board computes them
    report = json.loads((out / "report.json").read_text())
    assert sorted(f["place"] for f in report["farm"]["failed"]) == ["p-h2-b0", "p-h2-b1"]
    assert {p["place"] for p in report["farm"]["places"]} == {"p-h1-b0", "p-h1-b1", "p-h2-b0", "p-h2-b1"}
    assert {r["place"] for r in got} >= {"p-h1-b0", "p-h1-b1"}
    assert "FAILED" in stdout and "p-h2-b0" in stdout
    assert coord.client("who").stdout.strip().splitlines()[1:] == []    # no place left acquired
