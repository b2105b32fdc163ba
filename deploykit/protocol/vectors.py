"""Shared test vectors: bytes on the wire that the Python and C++ implementations must agree on.

`python -m deploykit.protocol.vectors` rewrites vectors.json from this file; the tests check
that the committed file equals what this module builds, and the C++ tests read the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from deploykit.protocol.framing import FrameDecoder, FrameError, encode_frame
from deploykit.protocol.messages import (
    Ack,
    Begin,
    Capability,
    DType,
    ErrorMsg,
    Hello,
    HelloRequest,
    Input,
    Log,
    Nack,
    OpTimes,
    OpTimingRequest,
    Ping,
    Pong,
    Reset,
    ResultBatch,
    ResultPart,
    TensorChunk,
    TensorDumpRequest,
    TensorSpec,
    TimedLoop,
    TimedLoopRequest,
    TimerKind,
    encode_message,
)
from deploykit.protocol.spec import PROTOCOL_VERSION

PATH = Path(__file__).with_name("vectors.json")

HELLO = Hello(
    board_id="nano33ble", model_sha256=bytes(range(32)), cpu_hz=64_000_000, timer=TimerKind.dwt,
    arena_configured=1040, arena_used=932, max_payload=256, rx_window=512,
    inputs=(TensorSpec(DType.int8, (1, 1), 0.05859375, -128),),
    outputs=(TensorSpec(DType.int8, (1, 1), 0.01171875, -26),), simulated=False,
    firmware_id=bytes(range(0xA0, 0xB0)), capabilities=0,
)
# A virtual-board-like HELLO: no build id (zeros on the wire), capability bits, two inputs.
HELLO_BARE = Hello(
    board_id="virtual", model_sha256=bytes(32), cpu_hz=1, timer=TimerKind.micros,
    arena_configured=16, arena_used=0, max_payload=1024, rx_window=4096,
    inputs=(TensorSpec(DType.float32, (2, 3), 0.0, 0), TensorSpec(DType.int16, (4,), 0.5, 7)),
    outputs=(TensorSpec(DType.uint8, (1,), 1.0, 0),), simulated=True,
    capabilities=int(Capability.OP_TIMING | Capability.TIMED_LOOP),
)

MESSAGES = [
    ("hello_req", HelloRequest(), 0),
    ("ping", Ping(b"\x00\x01\x02\xff"), 1),
    ("reset", Reset(), 2),
    ("begin", Begin(7), 3),
    ("input_one_record", Input(7, b"\x85"), 4),
    ("input_with_zero_bytes", Input(300, bytes([0, 0, 1, 0, 255, 0])), 5),
    ("input_long_cobs_block", Input(0, bytes((i % 255) + 1 for i in range(300))), 6),
    ("hello", HELLO, 0),
    ("hello_no_firmware_id_with_capabilities", HELLO_BARE, 9),
    ("pong", Pong(b"\x00\x01\x02\xff"), 1),
    ("ack", Ack(8), 2),
    ("nack", Nack(300), 3),
    ("result_same_timing", ResultBatch(7, (b"\x01", b"\xfe", b"\x00"), (7000, 7000, 7000), (109, 109, 109)), 4),
    ("result_two_runs", ResultBatch(10, (b"\x05", b"\x06"), (7000, 7010), (109, 110)), 5),
    ("result_long_run_wide_varints", ResultBatch(4_000_000_000, tuple(bytes([i]) for i in range(130)),
                                                 (2**32 - 1,) * 130, (300_000,) * 130), 7),
    ("error_invoke", ErrorMsg(3, 12, "Invoke failed"), 6),
    ("log", Log("Arena used 932 bytes"), 65535),
    ("op_timing_req", OpTimingRequest(7), 8),
    ("tensor_dump_req", TensorDumpRequest(70000, 64), 9),
    ("op_times", OpTimes(7, 0, 3, ((0, 9, 1200), (1, 3, 65536), (2, 25, 0))), 10),
    ("op_times_second_frame", OpTimes(7, 2, 3, ((2, 25, 4_000_000_000),)), 11),
    ("tensor_chunk_first", TensorChunk(7, 0, 3, 0, 1, 5, int(DType.int8), 6, 0, bytes([0x80, 0, 0x7F, 1])), 12),
    ("tensor_chunk_last", TensorChunk(7, 2, 3, 1, 2, 300, int(DType.float32), 8, 4, bytes(4)), 13),
    ("result_part", ResultPart(9, 240, 2**32 - 1, 300_000, bytes(range(1, 21))), 14),
    ("timed_loop_req", TimedLoopRequest(7, 2000), 15),
    ("timed_loop", TimedLoop(7, 41_234, 5_000_000_123, 2**32 + 5), 16),
]


def _fields(msg) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(msg).items():
        if isinstance(value, bytes):
            out[key] = value.hex()
        elif isinstance(value, tuple) and value and isinstance(value[0], bytes):
            out[key] = [v.hex() for v in value]
        elif isinstance(value, tuple) and value and isinstance(value[0], TensorSpec):
            out[key] = [{"dtype": int(s.dtype), "shape": list(s.shape), "scale": s.scale,
                         "zero_point": s.zero_point} for s in value]
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = int(value) if isinstance(value, (bool, int)) and not isinstance(value, bool) else value
    return out


def _frame_vectors() -> list[dict]:
    rows = []
    for name, msg, seq in MESSAGES:
        rows.append({"name": name, "type": msg.TYPE, "seq": seq, "payload": msg.payload().hex(),
                     "fields": _fields(msg), "wire": encode_message(msg, seq).hex()})
    return rows


def _corrupt_crc(msg, seq: int) -> bytes:
    """A frame whose COBS is valid but whose CRC is wrong."""
    from cobs import cobs

    body = bytearray(cobs.decode(encode_message(msg, seq)[1:-1]))
    body[-1] ^= 0x5A
    return b"\x00" + cobs.encode(bytes(body)) + b"\x00"


def _stream_vectors() -> list[dict]:
    good = encode_message(Ack(8), 2)
    hello = encode_message(HELLO, 0)
    flipped = _corrupt_crc(Ack(8), 2)
    truncated = good[:-4] + b"\x00"
    raw_no_cobs = b"\x00" + bytes([9, 1, 2]) + b"\x00"
    streams = [
        ("clean", good, [good], 0),
        ("boot_banner_then_hello", b"\r\nBooting deploykit...\r\n" + hello, [hello], 1),
        ("crc_error_then_good", bytes(flipped) + good, [good], 1),
        ("truncated_then_good", truncated + good, [good], 1),
        ("bad_cobs_then_good", raw_no_cobs + good, [good], 1),
        ("split_delimiters_only", b"\x00\x00\x00" + good + b"\x00\x00", [good], 0),
        ("two_frames_back_to_back", good + hello, [good, hello], 0),
        ("too_long_then_good", b"\x00" + b"\x01" * 400 + b"\x00" + good, [good], 1),
    ]
    rows = []
    for name, wire, frames, errors in streams:
        kinds = [e.kind for e in FrameDecoder(256).feed(wire) if isinstance(e, FrameError)]
        assert len(kinds) == errors, (name, kinds)
        rows.append({"name": name, "wire": wire.hex(), "frames": [f.hex() for f in frames],
                     "errors": errors, "error_kinds": kinds, "max_payload": 256})
    return rows


def build() -> dict:
    return {"protocol_version": PROTOCOL_VERSION, "frames": _frame_vectors(), "streams": _stream_vectors(),
            "crc32": [{"data": b"123456789".hex(), "crc": 0xCBF43926}],
            "empty_frame_wire": encode_frame(0x01, 0).hex()}


def write_or_check(path: Path, data: dict) -> None:
    """Write `data` as the committed JSON file, or with --check exit 1 when the file is stale."""
    text = json.dumps(data, indent=1) + "\n"
    if "--check" in sys.argv:
        sys.exit(0 if path.read_text() == text else 1)
    path.write_text(text)


def main() -> None:
    write_or_check(PATH, build())


if __name__ == "__main__":
    main()
