"""DeviceSession: the host side of the wire protocol (docs/protocol.md) over any pyserial URL.

Opening survives the reset that opening causes on many boards (boot text is skipped by
the framing, HELLO_REQ is retried), checks the model hash, and then streams records with
the go-back-N engine in stream.py. A vanished port is reopened and re-handshaken; a
reboot (an unsolicited HELLO) is met with a BEGIN at the first record without a result.
Every record ends with exactly one SampleResult or one SampleFailure.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from deploykit.errors import BadInput, DeployKitError, DeviceError
from deploykit.link.errors import FramePort, LinkLost
from deploykit.link.identity import IdentityMismatch, check_same, unreadable_hello
from deploykit.link.outputs import OutputLists, decode_outputs
from deploykit.link.samples import SampleFailure, SampleResult
from deploykit.protocol import (
    Frame,
    FrameError,
    Hello,
    HelloRequest,
    MsgType,
    Ping,
    Pong,
    Reset,
    Unknown,
    decode_message,
)
from deploykit.protocol.messages import ErrorMsg, Log, ProtocolError

MAX_STREAM_OFFSET = 0xFFFFFFFF
DAMAGED_PER_TRY = 5  # answers damaged on the line that a handshake retries per counted try


class StaleFirmware(IdentityMismatch):
    """The device runs a different model than the manifest describes."""


@dataclass
class FaultCounts:
    """What went wrong on the link and was recovered from."""

    retries: int = 0      # frames or handshakes sent again
    crc_errors: int = 0   # frames dropped for bad COBS/CRC/length, or unparsable payload
    resyncs: int = 0      # BEGIN-based recoveries of missing results
    resets: int = 0       # device reboots seen (unsolicited HELLO, frame numbers restarting)
    reconnects: int = 0   # port reopened after it vanished
    unknown_frames: int = 0  # CRC-valid frames of a message type this deploykit does not know (skipped)
    rejected_results: int = 0  # RESULTs for records not sent in full since the last BEGIN: dropped

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Timeouts:
    """Seconds; the streaming ones are first guesses, until round trips are measured (timing.py)."""

    hello: float = 0.5        # wait for HELLO after each HELLO_REQ (grows per try)
    ack: float = 0.1          # no ACK progress with frames in flight (then: from the ACK round trip)
    result: float = 0.2       # records acknowledged, result not back (then: from the RESULT delay)
    reopen_within: float = 10.0  # keep trying to reopen a vanished port this long


class DeviceSession:
    """A connected device: handshake, hash check, ping/reset, streaming records.

    Use as a context manager::

        with DeviceSession("virtual://m.json", 115200, expected_sha256=sha) as dev:
            for r in dev.stream(records):   # records: (n, in_record) uint8 or bytes
                ...
    """

    def __init__(self, url: str, baud: int = 115200, *, expected_sha256: str | None = None,
                 handshake_retries: int = 10, max_retries: int = 12,
                 timeouts: Timeouts | None = None, trace=None):
        self.url, self.baud = url, int(baud)
        self.expected_sha256 = expected_sha256
        self.handshake_retries = handshake_retries
        self.max_retries = max_retries
        self.timeouts = timeouts or Timeouts()
        self.faults = FaultCounts()
        self.link = FramePort(url, self.baud, trace)  # trace: a file for every frame (hil run --trace)
        self.hello: Hello | None = None
        self.first_hello: Hello | None = None  # every later HELLO must announce the same firmware
        self.logs: list[str] = []
        self.errors: list[ErrorMsg] = []
        self._token = 0
        self._lists: tuple[Hello | None, OutputLists | None] = (None, None)
        self._pending: list = []
        self._damaged = False  # the last wait ended at a damaged frame (a noisy line, not silence)
        self.record_time: float | None = None  # seconds per inference (with margin), once seen

    # --- lifecycle -------------------------------------------------------------------
    def open(self) -> Hello:
        """Open the port and handshake; raise DeviceError/StaleFirmware/BadInput."""
        self.link.open()
        try:
            return self.handshake()
        except BaseException:
            self.link.close()
            raise

    def close(self) -> None:
        self._pending = []
        self.link.close()

    def __enter__(self) -> DeviceSession:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- handshake ---------------------------------------------------------------------
    def handshake(self, patience: float = 0.0, other=None) -> Hello:
        """HELLO_REQ until a HELLO arrives (bounded), then check the model hash.

        `patience` seconds are added to every wait (a device still running queued
        inferences answers only after them); `other(msg, frame)` gets every other
        message that arrives meanwhile (a stream in progress keeps its RESULTs).
        """
        if other is not None:  # further HELLOs answer our own retries, not a reboot
            other = _skipping(Hello, other)
        attempt = damaged = 0
        while attempt < self.handshake_retries:
            if attempt or damaged:
                self.faults.retries += 1
            self.link.send(HelloRequest())
            self._damaged = False
            hello = self._wait_for(Hello, self.timeouts.hello * (1 + attempt * 0.25) + patience,
                                   other=other, early=True)
            if hello is not None:
                self.accept_hello(hello)
                self.barrier(other=other)
                return hello
            # an answer damaged on a noisy line is retried at once and costs no try (bounded too)
            damaged += self._damaged
            attempt += not self._damaged or damaged > DAMAGED_PER_TRY * self.handshake_retries
        seen = bytes(self.link.tail)
        raise DeviceError(
            f"no HELLO from the device on {self.url} after {self.handshake_retries} tries at "
            f"{self.baud} baud (last bytes received: {seen[-60:]!r}); check the firmware is "
            "flashed and the port and its baud rate are right")

    def accept_hello(self, hello: Hello) -> None:
        """Adopt a HELLO after checking its model hash, and that it is the session's first firmware."""
        got = hello.model_sha256.hex()
        if self.expected_sha256 and got != self.expected_sha256.lower():
            raise StaleFirmware(
                f"the device on {self.url} runs model sha256 {got} but the manifest has "
                f"{self.expected_sha256}; flash firmware built from this manifest "
                "(`deploykit deploy` or `deploykit build` + `deploykit flash`)")
        if self.first_hello is None:
            self.first_hello = hello
        check_same(self.first_hello, hello, self.url)  # a reboot into other firmware: never adopted
        self.hello = hello

    def barrier(self, timeout: float = 0.5, other=None) -> None:
        """PING a fresh token and drop (or hand to `other`) what the device sent before its PONG."""
        for _attempt in range(self.handshake_retries):
            self._token += 1
            token = b"dk" + os.urandom(4) + self._token.to_bytes(4, "little")
            self.link.send(Ping(token))
            pong = self._wait_for(Pong, timeout, lambda m, token=token: m.data == token, other, early=True)
            if pong is not None:
                return
            self.faults.retries += 1
        raise DeviceError(f"the device on {self.url} does not answer PING; reset it and retry")

    def receive(self) -> list:
        """Frames and frame errors: those left over by the last wait, else one poll's worth."""
        if self._pending:
            events, self._pending = self._pending, []
            return events
        return self.link.receive()

    def _wait_for(self, kind, timeout: float, match=lambda m: True, other=None, early: bool = False):
        """Read until a message of `kind` matching `match` arrives; None on timeout.

        Messages before it go to `other(msg, frame)` if given, else are dropped (LOG and
        ERROR recorded); those after it in the same read are kept for the next receive().
        `early`: give up at the first damaged frame too (likely the answer, corrupted).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.receive()
            for i, event in enumerate(events):
                msg = self.parse(event, count_errors=other is not None)
                if isinstance(msg, kind) and match(msg):
                    self._pending = events[i + 1:]
                    return msg
                if other is not None:
                    other(msg, event)
                if early and msg is None and _damaged(event):
                    self._pending = events[i + 1:]
                    self._damaged = True
                    return None
        return None

    # --- message parsing ---------------------------------------------------------------
    def parse(self, event, count_errors: bool = True):
        """Frame -> message; a bad frame -> None, counted as a CRC error unless it is text."""
        if isinstance(event, FrameError):
            msg, bad = None, not _looks_like_text(event.raw)
        else:
            msg = self._decode(event)
            bad = msg is None
        if bad and count_errors:
            self.faults.crc_errors += 1
        if isinstance(msg, Unknown):  # forward compatibility: skipped, never a damaged answer
            self.faults.unknown_frames += 1
        elif isinstance(msg, Log):
            self.logs.append(msg.text)
        elif isinstance(msg, ErrorMsg):
            self.errors.append(msg)
        return msg

    def _decode(self, frame: Frame):
        """The frame's message; None for a payload that does not parse.

        A HELLO that does not parse (another protocol version, an unknown timer kind) is
        the device's identity failing, not line noise: it ends the session at once.
        """
        try:
            return decode_message(frame, self.hello)
        except ProtocolError as exc:
            if frame.type == MsgType.HELLO:
                raise unreadable_hello(self.url, frame.version, exc) from exc
            return None

    # --- recovery building blocks ------------------------------------------------------
    def reconnect(self) -> Hello:
        """Reopen a vanished port (bounded by timeouts.reopen_within) and handshake again."""
        self.link.close()
        deadline = time.monotonic() + self.timeouts.reopen_within
        delay, last = 0.05, None
        while time.monotonic() < deadline:
            try:
                self.link.open()
                hello = self.handshake()
                self.faults.reconnects += 1
                return hello
            except IdentityMismatch:
                raise
            except (LinkLost, DeployKitError, OSError) as exc:  # BadInput: path not back yet
                last = exc
                self.link.close()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise DeviceError(f"lost the port {self.url} and could not reopen it within "
                          f"{self.timeouts.reopen_within:.0f} s ({last}); check the cable")

    # --- simple requests ---------------------------------------------------------------
    def ping(self, data: bytes = b"ping", timeout: float = 2.0) -> bytes:
        """Round-trip `data`; raise DeviceError when no PONG comes back."""
        self.link.send(Ping(data))
        pong = self._wait_for(Pong, timeout, lambda m: m.data == data)
        if pong is None:
            raise DeviceError(f"no PONG from the device on {self.url} within {timeout} s")
        return pong.data

    def reset(self) -> Hello:
        """Ask the device to reboot and wait for its HELLO (a USB board's port may vanish meanwhile)."""
        self.link.send(Reset())
        try:
            hello = self._wait_for(Hello, max(3.0, self.timeouts.hello * 3))
        except LinkLost:  # native-USB boards drop off the bus when they reboot
            return self.reconnect()
        if hello is None:
            return self.handshake()
        self.accept_hello(hello)
        self.barrier()
        return hello

    # --- streaming ---------------------------------------------------------------------
    def stream(self, records):
        """Yield one SampleResult or SampleFailure per record, as they arrive.

        `records` is an (n, in_record) uint8 array, a list of bytes, or one bytes
        object of n * in_record bytes; record i of this call is record i on the wire.
        """
        for batch in self.stream_batches(records):
            yield from batch

    def stream_batches(self, records):
        """Like stream(), but yield the results that arrived together as one list."""
        from deploykit.link.stream import Streamer
        data, n = self._as_stream(records)
        assert self.hello is not None, "stream before connect"
        size = self.hello.input_record_bytes
        per_pass = max(1, (MAX_STREAM_OFFSET // size) - 1)  # stream offsets are u32 on the wire
        for first in range(0, n, per_pass):
            count = min(per_pass, n - first)
            part = data[first * size:(first + count) * size]
            for batch in Streamer(self, part, count).run():
                yield [replace(r, record=r.record + first) for r in batch] if first else batch

    def infer(self, records) -> list[SampleResult | SampleFailure]:
        """Run records and return their results ordered by record."""
        return sorted(self.stream(records), key=lambda r: r.record)

    def decode_outputs(self, outputs: bytes) -> list[np.ndarray]:
        """Split an output record into one array per output tensor (HELLO's specs)."""
        assert self.hello is not None, "decode before connect"
        return decode_outputs(self.hello.outputs, outputs)

    def output_lists(self, outputs: bytes) -> list[list]:
        """Split an output record into one flat list of numbers per output tensor (fast)."""
        assert self.hello is not None, "decode before connect"
        if self._lists[0] is not self.hello:
            self._lists = (self.hello, OutputLists(self.hello.outputs))
        split = self._lists[1]
        assert split is not None  # set together with _lists[0], which is self.hello
        return split(outputs)

    def _as_stream(self, records) -> tuple[bytes, int]:
        assert self.hello is not None, "stream before connect"
        size = self.hello.input_record_bytes
        if isinstance(records, (bytes, bytearray, memoryview)):
            data = bytes(records)
        elif isinstance(records, np.ndarray):
            data = np.ascontiguousarray(records).tobytes()
        else:
            data = b"".join(bytes(r) for r in records)
        if size == 0 or len(data) % size:
            raise BadInput(f"{len(data)} input bytes are not a whole number of {size}-byte records")
        return data, len(data) // size


def _skipping(kind, other):
    """`other`, except for messages of `kind`."""
    def call(msg, event):
        if not isinstance(msg, kind):
            other(msg, event)
    return call


def _damaged(event) -> bool:
    """A frame that did not decode and is not plain text."""
    return not (isinstance(event, FrameError) and _looks_like_text(event.raw))


def _looks_like_text(raw: bytes) -> bool:
    """Boot banners and stray prints between frames are text, not corrupted frames."""
    if not raw:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in raw)
    return printable >= 0.9 * len(raw)
