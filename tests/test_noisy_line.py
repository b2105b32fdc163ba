"""A noisy line slows a run down; it never ends it (issue 9, C).

Behaviour only, no timing asserts: runs complete with exact outputs on very noisy
lines, the INPUT frames the device receives shrink under noise and grow back when the
line clears, and timeouts come from the round trips measured.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.firmware.boards import load_board
from deploykit.link.session import DeviceSession, Timeouts
from deploykit.link.stream import frame_data_size
from deploykit.link.timing import MIN_WAIT_S, StreamTimeouts
from deploykit.link.window import FrameSizer
from deploykit.model.tflm_host import TflmRunner
from deploykit.protocol import wire_size
from deploykit.virtual_board import DeviceEngine, FaultInjector, PacedLink, PtyServer, VirtualBoard, build_firmware


def _records(manifest, n: int, seed: int = 0) -> np.ndarray:
    size = sum(int(np.prod(s["shape"])) for s in manifest["inputs"])
    return np.random.default_rng(seed).integers(-128, 128, size=(n, size), dtype=np.int8)


def _expected(manifest, x):
    runner = TflmRunner(manifest.model_bytes())
    return [b"".join(runner.invoke_raw([row.tobytes()])) for row in x]


# slow: seconds of a paced 115200-baud line each; the fast loop keeps exact outputs under drop
# and corrupt faults (test_harness.py::test_run_under_all_faults_reports_them) and the frame sizing
# and timeout rules (test_frame_size_follows_the_error_rate, test_timeouts_follow_the_measured_round_trip)
@pytest.mark.slow
@pytest.mark.parametrize("spec", ["corrupt=0.01", "drop=0.01"])
def test_run_completes_at_one_percent_per_byte_with_exact_outputs(converted_examples, spec):
    """96-byte records in ~100-byte frames lose most frames at p = 1e-2: slower, never over."""
    manifest = converted_examples["gestures"]
    x = _records(manifest, 12)
    with (
        VirtualBoard(manifest.path, pacing=True, faults=spec, seed=2) as port,
        DeviceSession(port, 115200, expected_sha256=manifest.sha256) as dev,
    ):
        results = dev.infer(x.view(np.uint8))
        faults = dev.faults
    assert [r.record for r in results] == list(range(len(x)))
    assert [r.outputs for r in results] == _expected(manifest, x)
    assert faults.retries > 0


class RecordingEngine(DeviceEngine):
    """The virtual board, noting the data size of every INPUT frame it reads."""

    def __init__(self, *args, **kwargs):
        self.sizes: list[int] = []
        super().__init__(*args, **kwargs)

    def _on_input(self, msg, t):
        self.sizes.append(len(msg.data))
        super()._on_input(msg, t)


@pytest.mark.slow  # the FrameSizer rule itself: test_frame_size_follows_the_error_rate
def test_frames_shrink_under_noise_and_grow_back_when_it_clears(converted_examples):
    """96-byte records at 115200 baud: p = 1e-2 for the first 15 records, then a clean line."""
    manifest = converted_examples["gestures"]
    firmware = build_firmware(manifest, load_board("virtual"))
    engine = RecordingEngine(firmware, FaultInjector("corrupt=0.01", seed=4), timed=True)
    server = PtyServer(PacedLink(engine, 115200, paced=True))
    port = server.start()
    x = _records(manifest, 120)
    try:
        with DeviceSession(port, 115200, expected_sha256=manifest.sha256) as dev:
            largest = frame_data_size(dev.hello.max_payload, dev.hello.rx_window)
            got, noisy = [], None
            for batch in dev.stream_batches(x.view(np.uint8)):
                got += batch
                if noisy is None and len(got) >= 15:
                    noisy = len(engine.sizes)
                    engine.faults = FaultInjector(None)  # the line clears
    finally:
        server.stop()
    assert sorted(r.record for r in got) == list(range(len(x)))
    assert [r.outputs for r in sorted(got, key=lambda r: r.record)] == _expected(manifest, x)
    under_noise, clear = engine.sizes[5:noisy], engine.sizes[noisy:]
    assert np.median(under_noise) < largest / 2, "frames did not shrink on a noisy line"
    assert np.median(clear[-20:]) == largest, "frames did not grow back once the line cleared"


def test_frame_size_follows_the_error_rate():
    """One loss now and then keeps full frames; a steady 1 % per byte shrinks them."""
    sizer = FrameSizer(max_data=113, min_data=16)
    full = wire_size(4 + 113)
    for i in range(200):
        sizer.outcome(full, lost=(i % 100 == 50))
    assert sizer.target() == 113
    rng = np.random.default_rng(0)
    size = 113
    for _ in range(400):
        wire = wire_size(4 + size)
        sizer.outcome(wire, lost=bool(rng.random() > 0.99 ** wire))
        size = sizer.target()
    assert 16 <= size <= 40


def test_timeouts_follow_the_measured_round_trip():
    """Jacobson/Karels: a fast device gets short timeouts, a slow one long ones, no fixed floor."""
    first = Timeouts()
    fast = StreamTimeouts(first, record_time=0.0001)
    fast.configure(window=256, baud=921600)
    for delay in (0.004, 0.005, 0.006, 0.005) * 5:
        fast.saw_ack(delay)
        fast.saw_result(delay / 2, max_micros=100)
    assert fast.ack(1, 0) < first.ack and fast.result(1, 0) < first.result
    assert fast.ack(1, 0) == pytest.approx(max(fast.ack_rtt.srtt + 4 * fast.ack_rtt.rttvar, MIN_WAIT_S))
    slow = StreamTimeouts(first, record_time=0.0001)
    slow.configure(window=256, baud=921600)
    for delay in (0.5, 0.7, 0.6) * 5:
        slow.saw_ack(delay)
    assert slow.ack(1, 0) > 0.7
    jittery = StreamTimeouts(first, record_time=0.0001)
    jittery.configure(window=256, baud=921600)
    for delay in (0.02, 0.2) * 10:
        jittery.saw_ack(delay)
    assert jittery.ack(1, 0) > slow.ack_rtt.srtt / 2 > 0.2  # variance widens the timeout beyond the mean
    assert fast.ack(1, 2) == pytest.approx(4 * fast.ack(1, 0))  # backoff without progress


@pytest.fixture(scope="module")
def wide_manifest(tmp_path_factory):
    """A small classifier with 256-byte int8 inputs (larger than one INPUT frame)."""
    from deploykit.examples._common import save, seeded_keras
    from deploykit.model.convert import convert
    root = tmp_path_factory.mktemp("wide")
    keras = seeded_keras(0)
    x = np.random.default_rng(0).normal(size=(200, 256)).astype(np.float32)
    y = x[:, :4].argmax(axis=1)
    model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(y, 4), epochs=1, verbose=0)
    files = save(root, "wide", model, x[:100], x[:100], y[:100])
    return convert(files["model"], root / "out", name="wide", quantize="int8",
                   rep_data=files["rep_data"], test_data=files["test_data"])


@pytest.mark.slow
def test_readme_fault_example_completes_through_hil_run(wide_manifest, tmp_path):
    """The README's `--faults drop=0.005,reset=50` on a model with 256-byte inputs."""
    from deploykit.harness.run import run_hil
    with VirtualBoard(wide_manifest.path, pacing=True, faults="drop=0.005,reset=50", seed=1) as port:
        report = run_hil(wide_manifest.path, port, outdir=tmp_path / "out", warmup=0, limit=52,
                         float_reference=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()[1:]]
    assert sorted(r["index"] for r in rows) == list(range(52))
    assert report["faults"]["retries"] > 0 and report["faults"]["resets"] >= 1


# slow: seconds of resends before it gives up; the fast loop keeps the give-up diagnosis for a
# silent device (test_session.py::test_device_that_stops_answering_fails_clearly)
@pytest.mark.slow
def test_giving_up_on_a_hopeless_line_blames_the_line_not_the_board(sine_manifest):
    """A tiny retry budget on a line that damages most frames: the message names line errors."""
    from deploykit.errors import DeviceError
    with VirtualBoard(sine_manifest.path, baud=115200, pacing=True, faults="corrupt=0.03", seed=1) as port:
        dev = DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256, max_retries=1,
                            handshake_retries=60)
        with dev, pytest.raises(DeviceError) as info:
            list(dev.stream(_records(sine_manifest, 3000).view(np.uint8)))
    msg = str(info.value)
    assert "line" in msg and "--baud" in msg and "reset the board" not in msg
