"""Hostile devices on a real pty: HELLOs that lie, reboots into other firmware, unknown frames.

Each device is the virtual board's engine (real TFLM, the real protocol loop) with one
hostile twist on what it sends, served on a pty like any board; the harness on the other
side is the real DeviceSession / run_hil, which must refuse, stop or carry on as
docs/protocol.md says, naming what is wrong.
"""

from __future__ import annotations

import struct
import time
import zlib
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
from cobs import cobs

from deploykit.firmware.boards import load_board
from deploykit.harness.run import run_hil
from deploykit.link.identity import DeviceChanged, IdentityMismatch
from deploykit.link.session import DeviceSession, SampleResult
from deploykit.protocol import DType, Hello, TensorSpec, encode_frame
from deploykit.virtual_board import DeviceEngine, FaultInjector, PacedLink, PtyServer, build_firmware


class HostileEngine(DeviceEngine):
    """The virtual board, except for what it says.

    unknown: a CRC-valid frame of type 0xEE (a message from a newer firmware) before each frame;
    hello: sent instead of its own HELLO; reboot_hello: sent instead after the first boot;
    raw_hello: (protocol version, payload) sent as the HELLO frame.
    """

    def __init__(self, firmware, faults=None, *, unknown=False, hello=None, reboot_hello=None, raw_hello=None):
        self.unknown, self.hello, self.reboot_hello, self.raw_hello = unknown, hello, reboot_hello, raw_hello
        super().__init__(firmware, FaultInjector(faults), timed=False)

    def _send(self, msg, t: float) -> None:
        if self.unknown:
            self._out(encode_frame(0xEE, self.seq, b"a message this host does not know"), t)
        if isinstance(msg, Hello):
            if self.raw_hello is not None:
                return self._out(frame_with_version(*self.raw_hello, self.seq), t)
            if self.reboot_hello is not None and self.stats["boots"] > 1:
                msg = self.reboot_hello
            elif self.hello is not None:
                msg = self.hello
        super()._send(msg, t)

    def _out(self, wire: bytes, t: float) -> None:
        self.out.append((t, wire, True))
        self.seq = (self.seq + 1) & 0xFFFF


def frame_with_version(version: int, payload: bytes, seq: int) -> bytes:
    """A CRC-valid HELLO frame of any protocol version."""
    body = struct.pack("<BBH", version, 0x81, seq) + payload
    body += struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return b"\x00" + cobs.encode(body) + b"\x00"


@pytest.fixture(scope="module")
def sine_fw(sine_manifest):
    return build_firmware(sine_manifest, load_board("virtual"))


@contextmanager
def served(engine):
    server = PtyServer(PacedLink(engine, 115200, paced=False))
    port = server.start()
    try:
        yield port
    finally:
        server.stop()


def sine_records(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 1), dtype=np.uint8)


# ----- forward compatibility ------------------------------------------------------------------

def test_frames_of_an_unknown_type_are_counted_and_skipped(sine_manifest, sine_fw):
    """Before: one 0xEE frame ahead of each device frame failed the handshake ("does not answer PING")."""
    with served(HostileEngine(sine_fw, unknown=True)) as port, \
            DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev:
        results = dev.infer(sine_records(40))
        faults = dev.faults.as_dict()
    assert [r.record for r in results] == list(range(40))
    assert all(isinstance(r, SampleResult) for r in results)
    assert faults["unknown_frames"] >= 40 and faults["crc_errors"] == 0


# ----- HELLO checked completely at connect ----------------------------------------------------

def _int8(shape, scale, zero_point):
    return TensorSpec(DType.int8, shape, scale, zero_point)


@pytest.mark.parametrize("change, named", [
    (lambda h: {"outputs": (_int8((1, 2), h.outputs[0].scale, h.outputs[0].zero_point),)},
     ["output 0 has shape [1, 2]"]),
    (lambda h: {"outputs": (replace(h.outputs[0], scale=h.outputs[0].scale * 2),)}, ["output 0 has scale"]),
    (lambda h: {"inputs": (replace(h.inputs[0], zero_point=h.inputs[0].zero_point + 1),)}, ["input 0 has zero point"]),
    (lambda h: {"inputs": (replace(h.inputs[0], dtype=DType.uint8),)}, ["input 0 has dtype uint8"]),
    (lambda h: {"outputs": h.outputs * 2}, ["2 outputs (expected 1)"]),
    (lambda h: {"board_id": "nano33ble_sense", "outputs": (replace(h.outputs[0], zero_point=3),)},
     ["board 'nano33ble_sense', not 'virtual'", "output 0 has zero point 3"]),
], ids=["output-shape", "output-scale", "input-zero-point", "input-dtype", "output-count", "board-and-zero-point"])
def test_a_hello_that_differs_from_the_manifest_is_refused_at_once(sine_manifest, sine_fw, tmp_path, change, named):
    """Before: a spec mismatch ran (wrong numbers kept) or ended 20 s later as "stopped responding"."""
    lying = replace(sine_fw.hello, **change(sine_fw.hello))
    start = time.monotonic()
    with served(HostileEngine(sine_fw, hello=lying)) as port, pytest.raises(IdentityMismatch) as info:
        run_hil(sine_manifest.path, port, limit=20, warmup=0, outdir=tmp_path / "out",
                float_reference=False, board="virtual")
    message = str(info.value)
    assert all(part in message for part in named), message
    assert "\n" not in message and "flash" in message
    assert time.monotonic() - start < 10
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_an_unknown_timer_kind_is_one_clear_error(sine_manifest, sine_fw):
    """Before: `ValueError: 9 is not a valid TimerKind` escaped from the decoder."""
    payload = bytearray(sine_fw.hello.payload())
    payload[6] = 9  # the timer byte
    with served(HostileEngine(sine_fw, raw_hello=(2, bytes(payload)))) as port, \
            pytest.raises(IdentityMismatch, match="timer kind 9"):
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256).open()


def test_a_device_of_another_protocol_version_is_told_so(sine_manifest, sine_fw):
    """A protocol-1 firmware's HELLO is named as such, not taken for line noise."""
    with served(HostileEngine(sine_fw, raw_hello=(1, sine_fw.hello.payload()))) as port, \
            pytest.raises(IdentityMismatch, match="speaks protocol version 1, this deploykit speaks 2"):
        DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256).open()


# ----- a reboot mid-run into other firmware ---------------------------------------------------

@pytest.mark.parametrize("change, named", [
    ({"firmware_id": bytes(range(16))}, "firmware id"),
    ({"board_id": "esp32dev"}, "board 'esp32dev', not 'virtual'"),
    ({"model_sha256": bytes(32)}, "model sha256"),
    ({"outputs": (TensorSpec(DType.int8, (1, 1), 0.5, 0),)}, "output 0 has scale 0.5"),
], ids=["firmware-id", "board", "model-hash", "output-specs"])
def test_a_reboot_into_other_firmware_ends_the_run_naming_the_change(sine_fw, change, named):
    """Before: the new HELLO was adopted (only the hash was checked) and the run carried on."""
    other = replace(sine_fw.hello, **change)
    got = []
    # no expected hash: the first HELLO is the reference
    with served(HostileEngine(sine_fw, "reset=25", reboot_hello=other)) as port, DeviceSession(port, 115200) as dev:
        with pytest.raises(DeviceChanged) as info:
            for result in dev.stream(sine_records(80)):
                got.append(result.record)
        assert dev.hello == sine_fw.hello  # never adopted
    assert named in str(info.value) and "\n" not in str(info.value)
    assert 0 < len(got) < 80


def test_a_reboot_into_the_same_firmware_is_recovered(sine_fw):
    """The control: the same identity after the reboot, and the run completes."""
    with served(HostileEngine(sine_fw, "reset=25")) as port, DeviceSession(port, 115200) as dev:
        results = dev.infer(sine_records(80))
        assert dev.faults.resets >= 1
    assert [r.record for r in results] == list(range(80))
