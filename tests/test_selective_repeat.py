"""Selective repeat (issue 9, C): a lost INPUT frame costs that frame, not the window after it.

A device announcing SELECTIVE_ACK (the C++ core, the virtual board) keeps frames that
arrive after a gap and NACKs a damaged chunk at once; the host then resends only the
missing frame. A device without the capability still gets go-back-N. Real virtual boards
on a pty; the only change to them is which frames they are made to lose.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_protocol_cpp import BASE_ARGS, DeviceProc

from deploykit.firmware.boards import load_board
from deploykit.link.session import DeviceSession
from deploykit.model.tflm_host import TflmRunner
from deploykit.protocol import Ack, Hello, Input, Nack
from deploykit.protocol.spec import Capability
from deploykit.virtual_board import DeviceEngine, FaultInjector, PacedLink, PtyServer, build_firmware

LOSE_AT = 9  # the INPUT frame (counting from 0) the line loses: mid-stream, with another behind it


class LosingEngine(DeviceEngine):
    """The virtual board, made to lose one INPUT frame on the line; notes every INPUT it reads."""

    def __init__(self, *args, lose_at: int | None = None, **kwargs):
        self.lose_at, self.inputs = lose_at, []
        self.seen = 0
        self.discarded = 0  # intact frames after a gap that it neither consumed nor kept
        super().__init__(*args, **kwargs)

    def _on_input(self, msg, t):
        self.seen += 1
        if self.seen - 1 == self.lose_at:
            return  # lost on the line: nothing of it arrives
        self.inputs.append((msg.offset, len(msg.data)))
        held_before = len(self.held[1])
        gap = msg.offset > self.expected
        super()._on_input(msg, t)
        if gap and len(self.held[1]) == held_before:
            self.discarded += 1


def _records(manifest, n: int, seed: int = 0) -> np.ndarray:
    size = sum(int(np.prod(s["shape"])) for s in manifest["inputs"])
    return np.random.default_rng(seed).integers(-128, 128, size=(n, size), dtype=np.int8)


def _run(manifest, engine: LosingEngine, x: np.ndarray):
    server = PtyServer(PacedLink(engine, 115200, paced=True))
    port = server.start()
    try:
        with DeviceSession(port, 115200, expected_sha256=manifest.sha256) as dev:
            results = dev.infer(x.view(np.uint8))
            return results, dev.faults
    finally:
        server.stop()


def _expected(manifest, x):
    runner = TflmRunner(manifest.model_bytes())
    return [b"".join(runner.invoke_raw([row.tobytes()])) for row in x]


def test_one_lost_frame_mid_window_costs_exactly_one_resent_frame(converted_examples):
    """Every stream byte reaches the device once; the lost frame alone is sent again."""
    manifest = converted_examples["gestures"]
    firmware = build_firmware(manifest, load_board("virtual"))
    assert firmware.hello.capabilities & Capability.SELECTIVE_ACK
    engine = LosingEngine(firmware, timed=True, lose_at=LOSE_AT)
    x = _records(manifest, 24)
    results, faults = _run(manifest, engine, x)
    assert [r.outputs for r in results] == _expected(manifest, x)
    stream = x.size
    received = sum(n for _, n in engine.inputs)
    ends = np.maximum.accumulate([off + n for off, n in engine.inputs])
    resent = [off for k, (off, _) in enumerate(engine.inputs) if k and off < ends[k - 1]]  # behind the stream
    assert received == stream, f"{received - stream} bytes sent twice (go-back-N resends what follows a loss)"
    assert len(resent) == 1 and engine.discarded == 0
    assert faults.retries == 1 and faults.resyncs == 0


def test_a_device_without_the_capability_still_gets_go_back_n(converted_examples):
    """An older firmware drops what follows a gap: the host goes back and the run is exact."""
    manifest = converted_examples["gestures"]
    firmware = build_firmware(manifest, load_board("virtual"))
    firmware.hello = dataclasses.replace(firmware.hello, capabilities=int(Capability.OP_TIMING))
    engine = LosingEngine(firmware, timed=True, lose_at=LOSE_AT)
    x = _records(manifest, 24)
    results, faults = _run(manifest, engine, x)
    assert [r.outputs for r in results] == _expected(manifest, x)
    assert engine.discarded >= 1 and not engine.held[1]          # it kept nothing
    assert sum(n for _, n in engine.inputs) > x.size and faults.retries >= 1  # the host went back


def test_noisy_line_at_one_per_mille_keeps_every_intact_frame_and_exact_results(converted_examples):
    """corrupt=1e-3 per byte: exact outputs, and no intact frame after a loss thrown away."""
    manifest = converted_examples["gestures"]
    firmware = build_firmware(manifest, load_board("virtual"))
    engine = LosingEngine(firmware, FaultInjector("corrupt=0.001", seed=3), timed=True)
    x = _records(manifest, 60, seed=1)
    results, faults = _run(manifest, engine, x)
    assert [r.record for r in results] == list(range(len(x)))
    assert [r.outputs for r in results] == _expected(manifest, x)
    assert faults.retries > 0, "the line lost nothing: the test proves nothing"
    assert engine.discarded == 0


# ----------------------------------------------------------------------------- C++ core

def _cpp(cpp_programs, name: str) -> DeviceProc:  # noqa: F811
    dev = DeviceProc(cpp_programs[name], BASE_ARGS)
    assert isinstance(dev.next(Hello), Hello)
    return dev


@pytest.mark.parametrize("name, selective", [("posix_device", True), ("posix_device_gbn", False)])
def test_cpp_core_holds_frames_after_a_gap_only_when_built_to(cpp_programs, name, selective):  # noqa: F811
    dev = _cpp(cpp_programs, name)
    try:
        assert bool(dev.hello.capabilities & Capability.SELECTIVE_ACK) == selective
        dev.send(Input(1, b"\x02\x03"))                 # byte 0 lost
        assert dev.next(Nack) == Nack(0)
        dev.send(Input(0, b"\x01"))
        assert dev.next(Ack) == Ack(3 if selective else 1)
    finally:
        dev.close()
