"""The deploykit pytest plugin and the hil/ suite, run the way users run them (pytester)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HIL = Path(__file__).resolve().parents[1] / "hil"
INSTALLED = any(ep.value == "deploykit.pytest_plugin" for ep in entry_points(group="pytest11"))
PLUGIN = [] if INSTALLED else ["-p", "deploykit.pytest_plugin"]


# labgrid's own plugin starts a process-wide step logger and cannot run twice in one
# process, so in-process pytester runs leave it out (coexistence is tested in a subprocess).
NO_LABGRID = ["-p", "no:labgrid"] if any(ep.name == "labgrid" for ep in entry_points(group="pytest11")) else []


def run(pytester, *args):
    return pytester.runpytest(*PLUGIN, *NO_LABGRID, "-p", "no:cacheprovider", *args)


def test_options_are_grouped_under_deploykit(pytester):
    result = run(pytester, "--help")
    text = result.stdout.str()
    assert "deploykit hardware-in-the-loop" in text
    for flag in ("--board=ID", "--port=URL", "--manifest=PATH", "--baud=N"):
        assert flag in text


@pytest.mark.parametrize("name", ["sine", "gestures"])
def test_hil_suite_passes_on_the_virtual_board(pytester, converted_examples, name):
    result = run(pytester, str(HIL), "--manifest", str(converted_examples[name].path), "--hil-samples", "20")
    result.assert_outcomes(passed=9)


def test_hil_suite_takes_any_pyserial_url_as_port(pytester, converted_examples):
    m = converted_examples["linear"]
    url = f"virtual://{m.path}?board=nano33ble_sense&pacing=0"
    result = run(pytester, str(HIL), "--manifest", str(m.path), "--port", url, "--board", "nano33ble_sense")
    result.assert_outcomes(passed=9)


def test_stale_firmware_fails_with_the_hash_in_the_message(pytester, converted_examples):
    other = converted_examples["linear"].path
    result = run(pytester, str(HIL), "--manifest", str(converted_examples["sine"].path),
                 "--port", f"virtual://{other}?pacing=0", "-x")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*runs model sha256*but the manifest has*"])


def test_latency_budget_option_is_enforced(pytester, converted_examples):
    result = run(pytester, str(HIL), "--manifest", str(converted_examples["gestures"].path),
                 "--max-latency-ms", "0.001", "--hil-samples", "5")
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
    result = run(pytester, "--manifest", str(converted_examples["sine"].path))
    result.assert_outcomes(passed=2)


def test_without_manifest_the_plugin_skips(pytester):
    pytester.makepyfile(test_user="def test_needs(dk_session):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(skipped=1)


def test_hil_with_a_port_but_no_manifest_says_what_is_missing(pytester):
    result = run(pytester, str(HIL), "--port", "/dev/ttyACM9")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*--port needs --manifest*"])
