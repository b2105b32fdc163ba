"""DeviceSession against the virtual board on a real pty: clean runs, every fault, refusals.

The device's outputs are checked against TFLM on the host (the same kernels), so a
corrupted result that slipped through would show as a mismatch, not just a count.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from deploykit.errors import BadInput, DeviceError
from deploykit.link.session import DeviceSession, SampleResult, StaleFirmware, Timeouts
from deploykit.model.tflm_host import TflmRunner
from deploykit.virtual_board import VirtualBoard

FAULTS = {
    "drop": "drop=0.005",
    "corrupt": "corrupt=0.005",
    "dup": "dup=0.02",
    "garbage": "garbage=0.02",
    "stall": "stall=300:1.0",
    "reset": "reset=250",
    "disconnect": "disconnect=600",
}
FAULTS["all"] = ",".join(FAULTS.values())


def records(manifest, n: int, seed: int = 0) -> np.ndarray:
    size = sum(int(np.prod(s["shape"])) for s in manifest["inputs"])
    return np.random.default_rng(seed).integers(-128, 128, size=(n, size), dtype=np.int8)


@pytest.fixture(scope="module")
def expected_outputs(sine_manifest):
    """TFLM-host outputs of the 1000 sine records every fault test streams."""
    x = records(sine_manifest, 1000)
    runner = TflmRunner(sine_manifest.model_bytes())
    return x, [b"".join(runner.invoke_raw([row.tobytes()])) for row in x]


def check_exactly_once(results, expected):
    """Every record exactly once, and each output equal to TFLM on the host."""
    indices = [r.record for r in results]
    assert sorted(indices) == list(range(len(expected))), "lost or duplicated records"
    assert all(isinstance(r, SampleResult) for r in results)
    wrong = [r.record for r in results if r.outputs != expected[r.record]]
    assert wrong == [], f"outputs differ from TFLM host for records {wrong[:10]}"


def test_clean_stream_matches_tflm_host(sine_manifest, expected_outputs):
    x, expected = expected_outputs
    with (
        VirtualBoard(sine_manifest.path, pacing=True) as port,
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev,
    ):
        assert dev.hello.simulated and dev.hello.model_sha256.hex() == sine_manifest.sha256
        results = list(dev.stream(x.view(np.uint8)))
        assert dev.faults.as_dict() == {"retries": 0, "crc_errors": 0, "resyncs": 0,
                                        "resets": 0, "reconnects": 0, "unknown_frames": 0,
                                        "rejected_results": 0}
        assert all(r.micros > 0 and r.cycles > 0 and r.round_trip_s > 0 for r in results)
    check_exactly_once(results, expected)


@pytest.mark.parametrize("name", list(FAULTS))
@pytest.mark.slow
def test_stream_survives_fault(name, sine_manifest, expected_outputs):
    x, expected = expected_outputs
    with (
        VirtualBoard(sine_manifest.path, pacing=True, faults=FAULTS[name], seed=1) as port,
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev,
    ):
        results = list(dev.stream(x.view(np.uint8)))
        faults = dev.faults
    check_exactly_once(results, expected)
    if name in ("drop", "corrupt"):
        assert faults.retries + faults.crc_errors > 0
    if name == "reset":
        assert faults.resets + faults.resyncs + faults.retries >= 1
    if name == "disconnect":
        assert faults.reconnects == 1


def test_large_records_are_chunked(converted_examples):
    """Gestures records (96 B) span frames; 50 of them still come back exact."""
    manifest = converted_examples["gestures"]
    x = records(manifest, 50)
    runner = TflmRunner(manifest.model_bytes())
    expected = [b"".join(runner.invoke_raw([row.tobytes()])) for row in x]
    with (
        VirtualBoard(manifest.path, pacing=False, faults="drop=0.002", seed=3) as port,
        DeviceSession(port, 115200, expected_sha256=manifest.sha256) as dev,
    ):
        assert dev.hello.input_record_bytes > dev.hello.max_payload // 3
        results = dev.infer(x.view(np.uint8))
        arrays = dev.decode_outputs(results[0].outputs)
    check_exactly_once(results, expected)
    assert arrays[0].shape == tuple(manifest["outputs"][0]["shape"])


def test_stale_firmware_is_refused_with_both_hashes(converted_examples):
    sine, linear = converted_examples["sine"], converted_examples["linear"]
    with VirtualBoard(linear.path, pacing=False) as port, pytest.raises(StaleFirmware) as info:
        DeviceSession(port, 115200, expected_sha256=sine.sha256).open()
    assert sine.sha256 in str(info.value) and linear.sha256 in str(info.value)
    assert "flash" in str(info.value)


def test_ping_and_reset(sine_manifest):
    with (
        VirtualBoard(sine_manifest.path, pacing=False) as port,
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev,
    ):
        assert dev.ping(b"\x00abc\x00") == b"\x00abc\x00"
        hello = dev.reset()
        assert hello.model_sha256.hex() == sine_manifest.sha256
        assert len(dev.infer(records(sine_manifest, 5).view(np.uint8))) == 5


def test_reset_of_a_board_whose_usb_port_vanishes(sine_manifest):
    """A native-USB board re-enumerates when it reboots: reset() reopens the port."""
    from deploykit.firmware.boards import load_board
    from deploykit.virtual_board import DeviceEngine, PacedLink, PtyServer, build_firmware

    class UsbBoard(DeviceEngine):
        def _on_reset(self, msg, t):
            self.disconnect_requested = True
            self.power_off()

    firmware = build_firmware(sine_manifest, load_board("virtual"))
    server = PtyServer(PacedLink(UsbBoard(firmware, timed=False), 115200, paced=False))
    port = server.start()
    try:
        with DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev:
            hello = dev.reset()
            assert hello.model_sha256.hex() == sine_manifest.sha256 and dev.faults.reconnects == 1
            assert server.reconnects == 1
            assert len(dev.infer(records(sine_manifest, 5).view(np.uint8))) == 5
    finally:
        server.stop()


def test_missing_port_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        DeviceSession(str(tmp_path / "ttyNOPE"), 115200).open()


def test_silent_device_fails_after_bounded_retries():
    """A pty nobody answers on: the handshake gives up, naming the port and the baud."""
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        session = DeviceSession(path, 115200, handshake_retries=3, timeouts=Timeouts(hello=0.1))
        with pytest.raises(DeviceError, match="no HELLO .* after 3 tries at 115200 baud"):
            session.open()
    finally:
        os.close(master)
        os.close(slave)


def test_device_that_stops_answering_fails_clearly(sine_manifest):
    """A stall far longer than the retry budget: a DeviceError, not a hang or a wrong result."""
    x = records(sine_manifest, 400)
    with (
        VirtualBoard(sine_manifest.path, pacing=True, faults="stall=100:60") as port,
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256, max_retries=3, handshake_retries=2) as dev,
    ):
        got = []
        with pytest.raises(DeviceError, match="stopped responding|no HELLO") as info:
            for r in dev.stream(x.view(np.uint8)):
                got.append(r.record)
    assert len(got) == len(set(got)) and len(got) < 400
    assert "reset the board" in str(info.value)  # silence: the one case where resetting is the advice


def test_long_streams_are_split_where_u32_offsets_end(sine_manifest, monkeypatch):
    """Stream offsets are u32 on the wire: a longer run goes in passes, records renumbered."""
    import deploykit.link.session as session_mod
    monkeypatch.setattr(session_mod, "MAX_STREAM_OFFSET", 70)  # 69 one-byte records per pass
    x = records(sine_manifest, 200)
    runner = TflmRunner(sine_manifest.model_bytes())
    expected = [b"".join(runner.invoke_raw([row.tobytes()])) for row in x]
    with (
        VirtualBoard(sine_manifest.path, pacing=False) as port,
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev,
    ):
        results = dev.infer(x.view(np.uint8))
    check_exactly_once(results, expected)


def test_slow_inference_is_waited_for_not_recomputed(sine_manifest):
    """A board taking ~0.2 s per inference: the first record is sent alone until its RESULT
    tells the inference time; missing results are probed with PING, not re-run."""
    import dataclasses

    from deploykit.firmware.boards import load_board
    from deploykit.model.tflite_model import parse
    from deploykit.virtual_board import PtyServer
    from deploykit.virtual_board.device import make_link
    board = load_board("virtual")
    n_ops = len(parse(sine_manifest.model_bytes()).operators)   # the cost model charges each op this overhead
    slow = dataclasses.replace(board, op_overhead_cycles=int(0.2 * board.clock_mhz * 1e6 / n_ops))
    x = records(sine_manifest, 8)
    runner = TflmRunner(sine_manifest.model_bytes())
    server = PtyServer(make_link(sine_manifest, slow))
    port = server.start()
    try:
        with DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev:
            results = dev.infer(x.view(np.uint8))
            faults = dev.faults
    finally:
        server.stop()
    check_exactly_once(results, [b"".join(runner.invoke_raw([row.tobytes()])) for row in x])
    assert results[0].micros > 150_000
    assert faults.resyncs == 0 and faults.resets == 0
