"""The deploykit pytest plugin and the hil/ suite, run the way users run them (pytester), and
beside pytest-embedded-serial and labgrid's plugin in a venv of their own (a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy  # noqa: F401  (pytester resets sys.modules after each in-process run; numpy loads once per process)
import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
HIL = ROOT / "hil"
INSTALLED = any(ep.value == "deploykit.pytest_plugin" for ep in entry_points(group="pytest11"))
PLUGIN = [] if INSTALLED else ["-p", "deploykit.pytest_plugin"]


# labgrid's own plugin starts a process-wide step logger and cannot run twice in one
# process, so in-process pytester runs leave it out (coexistence is tested in a subprocess).
NO_LABGRID = ["-p", "no:labgrid"] if any(ep.name == "labgrid" for ep in entry_points(group="pytest11")) else []


def run(pytester, *args):
    return pytester.runpytest(*PLUGIN, *NO_LABGRID, "-p", "no:cacheprovider", *args)


def errors(result) -> list[str]:
    return [line for line in result.errlines if line.strip()]


def test_options_are_grouped_under_deploykit(pytester):
    result = run(pytester, "--help")
    text = result.stdout.str()
    assert "deploykit hardware-in-the-loop" in text
    for flag in ("--dk-board=ID", "--dk-port=URL", "--dk-manifest=PATH", "--dk-baud=N"):
        assert flag in text
    for bare in ("--board", "--port", "--manifest", "--baud", "--hil-samples", "--max-latency"):
        assert f"  {bare}" not in text, f"{bare} is not prefixed (clashes with pytest-embedded)"


def test_suite_knobs_live_in_the_hil_conftest(pytester):
    text = run(pytester, str(HIL), "--help").stdout.str()
    for flag in ("--hil-samples=N", "--dk-max-latency-us=US", "--hil-output-tolerance=LSB"):
        assert flag in text


@pytest.mark.parametrize("name", ["sine", "gestures"])
def test_hil_suite_passes_on_the_virtual_board(pytester, converted_examples, name):
    result = run(pytester, str(HIL), "--dk-manifest", str(converted_examples[name].path), "--hil-samples", "20")
    result.assert_outcomes(passed=9)


def test_hil_suite_takes_any_pyserial_url_as_port(pytester, converted_examples):
    m = converted_examples["linear"]
    url = f"virtual://{m.path}?board=nano33ble_sense&pacing=0"
    result = run(pytester, str(HIL), "--dk-manifest", str(m.path), "--dk-port", url, "--dk-board", "nano33ble_sense")
    result.assert_outcomes(passed=9)


def test_stale_firmware_fails_with_the_hash_in_the_message(pytester, converted_examples):
    other = converted_examples["linear"].path
    result = run(pytester, str(HIL), "--dk-manifest", str(converted_examples["sine"].path),
                 "--dk-port", f"virtual://{other}?pacing=0", "-x")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*runs model sha256*but the manifest has*"])


def test_latency_budget_option_is_enforced(pytester, converted_examples):
    result = run(pytester, str(HIL), "--dk-manifest", str(converted_examples["gestures"].path),
                 "--dk-max-latency-us", "1", "--hil-samples", "5")
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(["*exceeds the budget*"])


def test_fixtures_in_a_user_test_file(pytester, converted_examples):
    pytester.makepyfile(test_user="""
        from deploykit.protocol import Ping

        def test_session(dk_session, dk_board, dk_port):
            assert dk_session.hello.simulated and dk_board.id == "virtual"
            assert dk_session.ping(b"user") == b"user"

        def test_extra_board_with_faults(dk_virtual_board, dk_manifest):
            from deploykit.harness import DeviceSession
            port = dk_virtual_board(dk_manifest, pacing=False, faults="garbage=0.3", seed=2)
            with DeviceSession(port, 115200, expected_sha256=dk_manifest.sha256) as dev:
                results = dev.infer([b"\\x01", b"\\x02", b"\\x03"])
            assert [r.record for r in results] == [0, 1, 2]
    """)
    result = run(pytester, "--dk-manifest", str(converted_examples["sine"].path))
    result.assert_outcomes(passed=2)


def test_without_manifest_the_plugin_skips(pytester):
    pytester.makepyfile(test_user="def test_needs(dk_session):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(skipped=1)


def test_hil_with_a_port_but_no_manifest_says_what_is_missing(pytester):
    """A real board runs what was flashed on it: the demo's model is no stand-in for its manifest."""
    (pytester.path / "deploykit-demo" / "model").mkdir(parents=True)
    (pytester.path / "deploykit-demo" / "model" / "manifest.json").write_text("{}", encoding="utf-8")
    result = run(pytester, str(HIL), "--dk-port", "/dev/ttyACM9")
    assert result.ret != 0
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert errors(result) == [
        "ERROR: --dk-port needs --dk-manifest: the manifest.json of the model flashed on that board"]


def test_hil_without_a_model_says_how_to_make_one_in_one_line(pytester):
    result = run(pytester, str(HIL))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = errors(result)
    assert "deploykit demo" in line and "--dk-manifest" in line
    assert "error" not in result.stdout.str().lower()


def test_hil_without_manifest_tests_the_demo_model(pytester, converted_examples):
    """`deploykit demo` leaves deploykit-demo/model/manifest.json; `pytest hil` beside it tests that."""
    m = converted_examples["linear"]
    demo = pytester.path / "deploykit-demo" / "model"
    demo.mkdir(parents=True)
    paths = ("model", "rep_data", "test_data")  # the other source keys are not paths
    source = {k: (str(m.source_path(k)) if k in paths and m.source_path(k) else v)
              for k, v in m.data["source"].items()}
    (demo / "manifest.json").write_text(json.dumps(dict(m.data, source=source)), encoding="utf-8")
    shutil.copy(m.model_path, demo / m["model_file"])
    result = run(pytester, str(HIL), "--hil-samples", "5")
    result.assert_outcomes(passed=9)


def _outer_site_dirs() -> list[str]:
    """This interpreter's site directories that a venv made from it with --system-site-packages
    would not see: when the suite itself runs in a venv, that venv's own (a venv's "system"
    site is the base interpreter's), and the user site."""
    dirs = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    return [d for d in dirs if Path(d).is_dir() and not Path(d).is_relative_to(sys.base_prefix)]


@pytest.fixture(scope="session")
def embedded_venv(tmp_path_factory):
    """A venv that sees everything this interpreter sees (labgrid, deploykit's dependencies),
    with pytest-embedded-serial installed in it (never globally), whatever interpreter or venv
    runs the suite."""
    venv = tmp_path_factory.mktemp("dk-embedded") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    own_site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    outer = _outer_site_dirs()
    if outer:  # an "import" line of a .pth runs at start-up; addsitedir also reads those dirs' .pth files
        (own_site / "_dk_outer_site.pth").write_text(
            "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in outer) + "\n", encoding="utf-8")
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "pytest-embedded-serial"], capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot install pytest-embedded-serial here: {pip.stderr.strip().splitlines()[-1:]}")
    return python


def _run_in_venv(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))   # this checkout's deploykit, the venv's plugins
    return subprocess.run([str(python), "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_plugin_coexists_with_pytest_embedded_and_labgrid(embedded_venv, converted_examples, tmp_path):
    """pytest-embedded-serial owns bare --port/--baud and labgrid --lg-*: with both loaded beside
    deploykit, pytest starts (it stopped with `argument --port: conflicting option string`)
    and the hil/ suite passes on the virtual board next to each of them.

    The suite is not run with all three at once: pytest-embedded's autouse fixtures request a
    `target` fixture, which labgrid's plugin also defines (it skips without --lg-env), so those
    two skip every test of any suite when loaded together, deploykit or not."""
    done = _run_in_venv(embedded_venv, tmp_path, str(HIL), "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in ("--dk-port=URL", "--dk-manifest=PATH", "--port=PORT", "--lg-env=LG_ENV", "--hil-samples=N"):
        assert flag in done.stdout
    hil = [str(HIL), "--dk-manifest", str(converted_examples["sine"].path), "--dk-board", "virtual",
           "--hil-samples", "5"]
    for other, disabled in (("embedded", "no:labgrid"), ("labgrid", "no:pytest_embedded")):
        done = _run_in_venv(embedded_venv, tmp_path, "-p", disabled, *hil)
        plugins = next((line for line in done.stdout.splitlines() if line.startswith("plugins:")), "")
        assert f"{other}-" in plugins and "deploykit-" in plugins, done.stdout[-2000:]
        assert done.returncode == 0 and "9 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]


def test_device_tests_are_marked_hardware_on_a_real_port(pytester):
    """With --dk-port naming a board, `-m "not hardware"` deselects what talks to it and keeps the rest."""
    pytester.makepyfile(test_mixed="""
        def test_on_the_board(dk_session):
            pass

        def test_on_the_host():
            pass
    """)
    result = run(pytester, "--dk-port", "/dev/ttyACM9", "--dk-manifest", "m.json",
                 "-m", "not hardware", "--collect-only", "-q")
    text = result.stdout.str()
    assert "test_on_the_host" in text and "test_on_the_board" not in text and "1 deselected" in text
    text = run(pytester, "-m", "not hardware", "--collect-only", "-q").stdout.str()
    assert "test_on_the_board" in text  # on the virtual board nothing is hardware
