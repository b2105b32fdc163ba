"""A bare protocol client: send messages, collect what comes back. No window, no recovery.

For probing a device (tests of the virtual board, the benchmark) without the harness's
DeviceSession, so a fault in one cannot hide a fault in the other.
"""

from __future__ import annotations

import time

from deploykit.errors import DeviceError
from deploykit.protocol import FrameDecoder, Hello, encode_message
from deploykit.protocol.framing import FrameError
from deploykit.protocol.messages import ProtocolError, decode_message


class RawClient:
    """Speak to a serial.Serial-like port (or anything with read/write) frame by frame."""

    def __init__(self, port, max_payload: int = 4096):
        self.port = port
        self.decoder = FrameDecoder(max_payload)
        self.hello: Hello | None = None
        self.seq = 0
        self.text = bytearray()       # bytes outside frames (boot banners, garbage)
        self.errors: list[FrameError] = []

    def send(self, *messages) -> None:
        self.port.write(b"".join(self._encode(m) for m in messages))

    def _encode(self, msg) -> bytes:
        wire = encode_message(msg, self.seq)
        self.seq = (self.seq + 1) & 0xFFFF
        return wire

    def receive(self, until=None, timeout: float = 2.0) -> list:
        """Messages until `until(messages)` is true or `timeout` seconds pass."""
        got: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (until and until(got)):
            got += self.feed(self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1)))
        return got

    def feed(self, data: bytes) -> list:
        """Decode bytes already read; remember HELLO (RESULT needs its record size)."""
        out = []
        for event in self.decoder.feed(data):
            if isinstance(event, FrameError):
                self.errors.append(event)
                self.text += event.raw
                continue
            try:
                msg = decode_message(event, self.hello)
            except ProtocolError as exc:
                self.errors.append(FrameError(f"payload: {exc}", event.payload[:64]))
                continue
            if isinstance(msg, Hello):
                self.hello = msg
            out.append(msg)
        return out

    def handshake(self, timeout: float = 2.0, every: float = 0.25) -> Hello:
        """HELLO_REQ until a HELLO comes (a booting board does not hear the first ones)."""
        from deploykit.protocol import HelloRequest
        self.hello, got = None, []
        deadline = time.monotonic() + timeout
        while self.hello is None and time.monotonic() < deadline:
            self.send(HelloRequest())
            got += self.receive(lambda ms: any(isinstance(m, Hello) for m in ms), every)
        if self.hello is None:
            raise DeviceError(f"no HELLO within {timeout} s; received {got!r}")
        return self.hello
