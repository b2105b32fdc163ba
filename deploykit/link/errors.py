"""One serial link: a port from deploykit.link.ports, frame encoding and decoding, reopening.

The only state here is the byte stream: the port, the frame decoder and our sequence
number. What the frames mean is session.py's business. Any I/O failure of the port
(unplugged, re-enumerated, closed by the device) becomes LinkLost so the session can
reopen it.
"""

from __future__ import annotations

import contextlib

import serial

from deploykit.errors import DeviceError
from deploykit.link.ports import open_port, reopen_port
from deploykit.link.trace import FrameTrace
from deploykit.protocol import FrameDecoder, encode_message

POLL_S = 0.005  # how long one read waits for the first byte


class LinkLost(DeviceError):
    """The port failed under us (vanished, closed, I/O error); the session may reopen it."""


class FramePort:
    """Frames over one pyserial port, reopenable."""

    def __init__(self, url: str, baud: int, trace=None):
        self.url, self.baud = url, baud
        self.trace = FrameTrace(trace)  # every frame: the deploykit.link logger and --trace FILE
        self.port = None
        self._closed = None  # the port object last closed: reopened as it is, like a re-plugged cable
        self.decoder = FrameDecoder(max_payload=65535)
        self.seq = 0
        self.tail = bytearray()  # the last bytes received, shown when a handshake times out

    def open(self) -> None:
        """Open the port (raises BadInput/DeviceError from deploykit.link.ports); after a close,
        the same port object again (a virtual:// port finds its board back after a disconnect)."""
        if self._closed is not None:
            self.port = reopen_port(self._closed, self.url)
        else:
            self.port = open_port(self.url, self.baud, timeout=POLL_S)
        self._closed = None
        self.decoder = FrameDecoder(max_payload=65535)
        self.trace.open(self.url)

    def close(self) -> None:
        port, self.port = self.port, None
        self.trace.close()
        if port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()
            self._closed = port

    def _live(self, what: str):
        """The open port; a closed one is a lost link like any other."""
        if self.port is None:
            raise LinkLost(f"lost the port {self.url} ({what} failed: the port is closed); check the cable")
        return self.port

    def send(self, msg) -> int:
        """Write one message as the next frame; return its wire size."""
        data = encode_message(msg, self.seq)
        self.trace.sent(msg, self.seq, data)
        self.seq = (self.seq + 1) & 0xFFFF
        try:
            self._live("write").write(data)
        except (OSError, serial.SerialException, AttributeError, TypeError) as exc:
            raise LinkLost(f"lost the port {self.url} (write failed: {exc}); check the cable") from exc
        return len(data)

    def receive(self) -> list:
        """Return the frames and frame errors of whatever arrives within one poll."""
        try:
            port = self._live("read")
            waiting = port.in_waiting
            data = port.read(waiting if waiting else 1)
            if data and not waiting:
                more = port.in_waiting
                if more:
                    data += port.read(more)
        except (OSError, serial.SerialException, AttributeError, TypeError) as exc:
            raise LinkLost(f"lost the port {self.url} (read failed: {exc}); check the cable") from exc
        if not data:
            return []
        self.tail = (self.tail + data)[-96:]
        events = self.decoder.feed(bytes(data))
        self.trace.received(events)
        return events
