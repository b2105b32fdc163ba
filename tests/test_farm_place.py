"""`deploykit hil run --place NAME` on a real labgrid coordinator and exporter (127.0.0.1 only).

The place is acquired for the run and released however the run ends (done, Ctrl-C,
SIGTERM, SIGHUP); after a SIGKILL the same user's next run takes it back; someone else's
place, a coordinator that does not answer: exit 3; an unknown place, a place without a
serial port, a place of another board kind: exit 2. Nothing is left acquired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("labgrid")

from deploykit.virtual_board.lab import Coordinator, Host, free_port, ser2net_binary  # noqa: E402

try:
    ser2net_binary()
except Exception:  # noqa: BLE001
    pytest.skip("ser2net is not installed (`apt-get install ser2net`)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(sine_manifest, tmp_path_factory):
    """A coordinator and one exporter host: p1 (fast board), p2 (slow board), bare (no port)."""
    root = tmp_path_factory.mktemp("farm")
    coord = Coordinator(root / "coordinator")
    host = Host("h1", root / "h1")
    try:
        coord.start()
        host.add_board(sine_manifest, pacing=False)
        host.add_board(sine_manifest, pacing=True, baud=9600)
        host.start_exporter(coord.address)
        for place, board in (("p1", "h1-b0"), ("p2", "h1-b1"), ("bare", None)):
            coord.create_place(place, [f"h1/{board}/NetworkSerialPort"] if board else [], {"board": "virtual"})
        _wait_resources(coord, 2)
        yield coord
    finally:
        host.stop()
        coord.stop()


def _wait_resources(coord, n, within=20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if coord.client("resources").stdout.count("NetworkSerialPort") >= n:
            return
        time.sleep(0.2)
    raise AssertionError("the exporter did not publish its ports")


def acquired(coord, place) -> str | None:
    from deploykit.link.labgrid_place import CoordinatorClient as Client
    with Client(coord.address) as client:
        return client.place(place).acquired


def deploykit(coord, manifest, outdir, *args, env=None, **popen):
    cmd = [sys.executable, "-m", "deploykit", "hil", "run", "--manifest", str(manifest.path),
           "--coordinator", coord.address, "-o", str(outdir), "--quiet", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **popen)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_run_on_a_place_acquires_runs_exactly_and_releases(farm, sine_manifest, tmp_path):
    code, out, err = finish(deploykit(farm, sine_manifest, tmp_path / "r", "--place", "p1", "--limit", "200"))
    assert code == 0, err
    assert "acquired place p1 (rfc2217://127.0.0.1:" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["samples"] == 200 and report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert acquired(farm, "p1") is None


@pytest.mark.parametrize("args, needle", [
    (["--place", "nowhere"], "no place 'nowhere'"),
    (["--place", "bare"], "place bare has no serial port"),
    (["--place", "p1", "--board", "esp32dev"], "place p1 is tagged board=virtual, not esp32dev"),
])
def test_bad_places_exit_2_one_line_nothing_acquired(farm, sine_manifest, tmp_path, args, needle):
    code, out, err = finish(deploykit(farm, sine_manifest, tmp_path / "r", *args))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert acquired(farm, "p1") is None and acquired(farm, "bare") is None


def test_a_coordinator_that_does_not_answer_is_exit_3(sine_manifest, tmp_path):
    cmd = [sys.executable, "-m", "deploykit", "hil", "run", "--manifest", str(sine_manifest.path), "--place", "p1",
           "--coordinator", f"127.0.0.1:{free_port()}", "-o", str(tmp_path / "r")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 3 and len(lines) == 1 and "labgrid coordinator at 127.0.0.1:" in lines[0], done.stderr


def test_a_place_held_by_someone_else_is_exit_3_and_stays_theirs(farm, sine_manifest, tmp_path):
    alice = {"LG_USERNAME": "alice"}
    subprocess.run([*_client(farm), "-p", "p1", "acquire"], check=True, capture_output=True,
                   env={**os.environ, **alice})
    try:
        code, out, err = finish(deploykit(farm, sine_manifest, tmp_path / "r", "--place", "p1"))
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 3 and len(lines) == 1 and "place p1 is acquired by" in lines[0] and "/alice" in lines[0], err
        assert acquired(farm, "p1").endswith("/alice")
    finally:
        subprocess.run([*_client(farm), "-p", "p1", "release"], check=True, capture_output=True,
                       env={**os.environ, **alice})


def _client(coord):
    from deploykit.virtual_board.lab import _labgrid_bin
    return [_labgrid_bin("labgrid-client"), "-x", coord.address]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_run_releases_its_place(farm, sine_manifest, tmp_path, sig):
    proc = deploykit(farm, sine_manifest, tmp_path / "r", "--place", "p2", "--baud", "9600")
    _wait_started(proc, tmp_path / "r" / "results.jsonl")
    assert acquired(farm, "p2") is not None
    proc.send_signal(sig)
    code, out, err = finish(proc, 30)
    assert code == 130, err
    assert acquired(farm, "p2") is None


def test_after_sigkill_the_same_users_next_run_takes_its_place_back(farm, sine_manifest, tmp_path):
    proc = deploykit(farm, sine_manifest, tmp_path / "r", "--place", "p2", "--baud", "9600")
    _wait_started(proc, tmp_path / "r" / "results.jsonl")
    proc.kill()
    finish(proc, 30)
    assert acquired(farm, "p2") is not None                  # a killed run releases nothing
    code, out, err = finish(deploykit(farm, sine_manifest, tmp_path / "r", "--place", "p2", "--baud", "9600",
                                      "--limit", "40"))
    assert code == 0, err
    assert acquired(farm, "p2") is None


def _wait_started(proc, results, within=60.0):
    """Until the run has written rows (it holds the place and streams)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) > 3:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("the run did not start streaming")
