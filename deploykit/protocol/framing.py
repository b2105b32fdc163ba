"""Frames on the wire: 0x00, COBS(header + payload + CRC-32), 0x00.

The leading delimiter flushes whatever garbage came before (boot banners, stray prints),
so the frame after it decodes cleanly; empty chunks between two delimiters are ignored.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from cobs import cobs

from deploykit.protocol.spec import FRAME_CRC, FRAME_HEADER, PROTOCOL_VERSION

HEADER = struct.Struct("<BBH")  # version, type, seq
CRC = struct.Struct("<I")
assert (HEADER.size, CRC.size) == (FRAME_HEADER, FRAME_CRC)
# Bytes a frame adds to its payload before COBS: header + CRC; on the wire add 2
# delimiters and COBS's 1 byte per 254 (at least 1).
FRAME_OVERHEAD = HEADER.size + CRC.size


@dataclass(frozen=True)
class Frame:
    """One decoded, CRC-checked frame."""

    version: int
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class FrameError:
    """A chunk between delimiters that is not a valid frame."""

    kind: str  # "cobs" | "short" | "crc" | "overflow"
    raw: bytes


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """Return the wire bytes of one frame."""
    body = HEADER.pack(PROTOCOL_VERSION, msg_type, seq & 0xFFFF) + bytes(payload)
    body += CRC.pack(zlib.crc32(body) & 0xFFFFFFFF)
    return b"\x00" + cobs.encode(body) + b"\x00"


def wire_size(payload_len: int) -> int:
    """Wire bytes of a frame whose payload has `payload_len` bytes."""
    body = payload_len + FRAME_OVERHEAD
    return body + body // 254 + 1 + 2


def max_payload_for_window(window: int, cap: int = 65535) -> int:
    """Largest payload (at most `cap`, a u16 in HELLO) whose whole frame fits `window` wire bytes.

    The firmware sizes DK_MAX_PAYLOAD and the virtual board its HELLO by this rule, so one
    frame always fits the receive window a device advertises.
    """
    payload = min(window, cap)
    while payload > 0 and wire_size(payload) > window:
        payload -= 1
    return payload


def max_encoded_size(max_payload: int) -> int:
    return wire_size(max_payload) - 2


class FrameDecoder:
    """Turn a byte stream into Frames and FrameErrors; never raises on bad input.

    Bytes accumulate until a 0x00; a chunk longer than the largest legal frame is
    discarded up to the next delimiter and reported once as "overflow".
    """

    def __init__(self, max_payload: int = 4096):
        self.limit = max_encoded_size(max_payload)
        self._buf = bytearray()
        self._overflowed = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        events: list[Frame | FrameError] = []
        for chunk_end in _split_keep(data):
            part, ended = chunk_end
            self._take(part)
            if ended:
                event = self._finish()
                if event is not None:
                    events.append(event)
        return events

    def _take(self, part: bytes) -> None:
        if self._overflowed:
            return
        self._buf += part
        if len(self._buf) > self.limit:
            self._overflowed = True

    def _finish(self) -> Frame | FrameError | None:
        raw, overflowed = bytes(self._buf), self._overflowed
        self._buf.clear()
        self._overflowed = False
        if overflowed:
            return FrameError("overflow", raw[:64])
        if not raw:
            return None
        return decode_chunk(raw)


def _split_keep(data: bytes):
    """Yield (part, ended_by_delimiter) pieces of `data` split at 0x00."""
    start = 0
    while True:
        idx = data.find(b"\x00", start)
        if idx < 0:
            if start < len(data):
                yield data[start:], False
            return
        yield data[start:idx], True
        start = idx + 1


def decode_chunk(raw: bytes) -> Frame | FrameError:
    """Decode the COBS bytes between two delimiters."""
    try:
        body = cobs.decode(raw)
    except cobs.DecodeError:
        return FrameError("cobs", raw[:64])
    if len(body) < FRAME_OVERHEAD:
        return FrameError("short", raw[:64])
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if zlib.crc32(body[:-CRC.size]) & 0xFFFFFFFF != crc:
        return FrameError("crc", raw[:64])
    version, msg_type, seq = HEADER.unpack_from(body)
    return Frame(version, msg_type, seq, bytes(body[HEADER.size:-CRC.size]))
