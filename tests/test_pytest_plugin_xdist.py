"""The plugin on a labgrid farm: `--dk-place` (one place per pytest-xdist worker) beside
labgrid's own pytest plugin, against places served by virtual boards behind ser2net."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from test_pytest_plugin import HIL, PLUGIN, ROOT, run  # one pytester setup for the plugin's tests

pytest_plugins = ["pytester"]



def test_place_options_exist(pytester):
    text = run(pytester, "--help").stdout.str()
    assert "--dk-place=NAME" in text and "--dk-coordinator=ADDR" in text


def test_place_and_port_together_is_one_usage_line(pytester):
    result = run(pytester, "--dk-place", "p1", "--dk-port", "/dev/ttyACM0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.strip()] == [
        "ERROR: --dk-place and --dk-port exclude each other: a place brings its own port"]


def test_fewer_places_than_workers_is_one_usage_line(pytester):
    pytest.importorskip("xdist")
    result = run(pytester, "-p", "xdist", "-n", "3", "--dk-place", "p1", "--dk-place", "p2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.strip()] == [
        "ERROR: 3 pytest-xdist workers but 2 --dk-place: give one place per worker, or fewer workers (-n)"]


@pytest.fixture
def two_places(sine_manifest, tmp_path):
    """A labgrid coordinator and one exporter host with two virtual boards, as places p1 and p2."""
    pytest.importorskip("labgrid")
    from deploykit.virtual_board.lab import Coordinator, Host, ser2net_binary
    try:
        ser2net_binary()
    except Exception:  # noqa: BLE001
        pytest.skip("ser2net is not installed (`apt-get install ser2net`)")
    coord = Coordinator(tmp_path / "coordinator")
    host = Host("h1", tmp_path / "h1")
    try:
        coord.start()
        host.add_boards(sine_manifest, 2)
        host.start_exporter(coord.address)
        for place, board in zip(("p1", "p2"), host.boards, strict=True):
            coord.create_place(place, [f"h1/{board['name']}/NetworkSerialPort"], {"board": "virtual"})
        _wait(lambda: coord.client("resources").stdout.count("NetworkSerialPort") >= 2, "the exporter's ports")
        yield coord
    finally:
        host.stop()
        coord.stop()
    for proc in host.procs + coord.host.procs:
        assert proc.poll() is not None   # every process the lab started is stopped


def _wait(check, what, within=30.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_hil_suite_over_two_places_with_xdist_beside_labgrids_plugin(two_places, sine_manifest, tmp_path):
    pytest.importorskip("xdist")
    coord = two_places
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", str(HIL), "-p", "xdist", "-n", "2", *PLUGIN, "-p", "no:cacheprovider",
           "--dk-manifest", str(sine_manifest.path), "--dk-place", "p1", "--dk-place", "p2",
           "--dk-coordinator", coord.address, "--hil-samples", "20", "--junitxml", str(junit),
           f"--basetemp={tmp_path / 'inner'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)   # labgrid's plugin loads beside ours
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "9 passed" in done.stdout
    assert "labgrid" in done.stdout.split("collected")[0].split("plugins:")[-1]   # labgrid's plugin was loaded
    cases = ET.parse(junit).getroot().iter("testcase")
    places = {p.get("value") for case in cases for p in case.iter("property") if p.get("name") == "dk_place"}
    assert places == {"p1", "p2"}                                              # both workers had their place
    assert coord.client("who").stdout.strip().splitlines()[1:] == []          # no place left acquired
    for place in ("p1", "p2"):
        assert "acquired: None" in coord.client("show", place=place).stdout


@pytest.mark.slow
def test_sigterm_mid_session_releases_the_place(two_places, sine_manifest, tmp_path):
    import signal
    coord = two_places
    cmd = [sys.executable, "-m", "pytest", str(HIL), *PLUGIN, "-p", "no:cacheprovider",
           "--dk-manifest", str(sine_manifest.path), "--dk-place", "p2", "--dk-coordinator", coord.address,
           "--hil-samples", "5000", f"--basetemp={tmp_path / 'inner'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait(lambda: "acquired: None" not in coord.client("show", place="p2").stdout, "p2 acquired", 60)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in out, out[-2000:]                               # the run was cut short
    assert "acquired: None" in coord.client("show", place="p2").stdout, out[-2000:]   # and p2 released
