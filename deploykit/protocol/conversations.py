"""Conversation vectors: device behaviour that the Python and C++ devices must both show.

Where vectors.json pins bytes on the wire, a conversation pins behaviour: a device
configuration and a list of steps, each the host frames that go in and the device
frames expected out (message type and fields; timing fields and LOGs are not compared,
as the two devices time and log differently). tests/test_conversations.py replays every
conversation against the virtual board's DeviceEngine and against the C++ core
(tests/cpp/posix_device.cpp), so the "Device behaviour" section of docs/protocol.md has one
executable statement.

The model both devices run is a deterministic stand-in (posix_device.cpp's fake inference):
output[i] = input[i % in_len] * 3 + 7 + i (mod 256), and an input whose first byte is the
configuration's `fail_byte` fails its Invoke (ERROR INVOKE_FAILED).

`python -m deploykit.protocol.conversations` rewrites conversations.json from this file;
`--check` exits 1 when it is stale (the tests check the same).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from deploykit.protocol.framing import encode_frame
from deploykit.protocol.messages import (
    Ack,
    Begin,
    DType,
    ErrorMsg,
    Hello,
    HelloRequest,
    Input,
    Nack,
    Ping,
    Pong,
    Reset,
    ResultBatch,
    TensorSpec,
    TimedLoop,
    TimedLoopRequest,
    TimerKind,
    encode_message,
)
from deploykit.protocol.spec import PROTOCOL_VERSION, REPEAT_RESULTS, Capability
from deploykit.protocol.vectors import _corrupt_crc, _fields, write_or_check

PATH = Path(__file__).with_name("conversations.json")
TIMING_FIELDS = ("cycles", "micros")  # the devices' clocks differ: never compared
MAX_PAYLOAD = 256  # the C++ core's default DK_MAX_PAYLOAD


def fake_outputs(record: bytes, out_record: int) -> bytes:
    """The stand-in model both devices run: one output record for one input record."""
    return bytes((record[i % len(record)] * 3 + 7 + i) % 256 for i in range(out_record))


def config(name: str, inputs: str = "9:1:0.05859375:-128", outputs: str = "9:1:0.01171875:-26",
           window: int = 512, fail_byte: int | None = None, capabilities: int = 0) -> dict:
    """A device configuration; SPEC strings are posix_device's dtype:AxB:scale:zero_point."""
    return {"name": name, "board_id": "conv", "model_sha256": bytes(range(32)).hex(), "cpu_hz": 64_000_000,
            "timer": int(TimerKind.dwt), "arena": [2048, 1500], "window": window, "max_payload": MAX_PAYLOAD,
            "inputs": inputs, "outputs": outputs, "fail_byte": fail_byte, "capabilities": capabilities}


def _spec(text: str) -> TensorSpec:
    dtype, shape, scale, zp = text.split(":")
    return TensorSpec(DType(int(dtype)), tuple(int(d) for d in shape.split("x")), float(scale), int(zp))


def hello_for(cfg: dict) -> Hello:
    """The HELLO a device built with this configuration announces."""
    return Hello(board_id=cfg["board_id"], model_sha256=bytes.fromhex(cfg["model_sha256"]), cpu_hz=cfg["cpu_hz"],
                 timer=TimerKind(cfg["timer"]), arena_configured=cfg["arena"][0], arena_used=cfg["arena"][1],
                 max_payload=cfg["max_payload"], rx_window=cfg["window"],
                 inputs=tuple(_spec(s) for s in cfg["inputs"].split(",")),
                 outputs=tuple(_spec(s) for s in cfg["outputs"].split(",")), simulated=False,
                 # the core always holds frames after a gap
                 firmware_id=b"", capabilities=cfg.get("capabilities", 0) | int(Capability.SELECTIVE_ACK))


def _results(hello: Hello, first: int, records: list[bytes]) -> ResultBatch:
    """The RESULT for consecutive records (timing left zero: it is not compared)."""
    out = hello.output_record_bytes
    n = len(records)
    return ResultBatch(first, tuple(fake_outputs(r, out) for r in records), (0,) * n, (0,) * n)


def _frame_with_version(version: int, msg_type: int, seq: int) -> bytes:
    body = struct.pack("<BBH", version, msg_type, seq)
    body += struct.pack("<I", zlib.crc32(body))
    from cobs import cobs
    return b"\x00" + cobs.encode(body) + b"\x00"


Step = tuple[list | bytes, list]  # host messages (or raw wire bytes) in, device messages out


def _conversations() -> list[tuple[str, dict, list[Step]]]:
    """(name, configuration, steps); a step is (host messages or raw bytes, expected device messages)."""
    one = config("one_byte_records")
    h1 = hello_for(one)
    boot: Step = ([], [h1])
    r = _results
    convs: list[tuple[str, dict, list[Step]]] = [
        ("hello_and_ping", one, [
            boot,
            ([HelloRequest()], [h1]),
            ([Ping(b"\x00\x01\x02\xff")], [Pong(b"\x00\x01\x02\xff")]),
            ([Ping(b""), Ping(bytes(range(256))), Ping(bytes(MAX_PAYLOAD))],   # any bytes, up to max_payload
             [Pong(b""), Pong(bytes(range(256))), Pong(bytes(MAX_PAYLOAD))]),
        ]),
        ("reset_loses_the_stream_position", one, [
            boot,
            ([Input(0, b"\x01\x02\x03")], [Ack(3), r(h1, 0, [b"\x01", b"\x02", b"\x03"])]),
            ([Reset()], [h1]),
            ([Input(3, b"\x04")], [Nack(0)]),                      # the old position is gone
            ([Input(0, b"\x10")], [Ack(1), r(h1, 0, [b"\x10"])]),  # the stream restarts at record 0
        ]),
        ("clean_batch", one, [
            boot,
            ([Begin(7)], [Ack(7)]),
            ([Input(7, b"\x11\x22\x33\x44")], [Ack(11), r(h1, 7, [b"\x11", b"\x22", b"\x33", b"\x44"])]),
        ]),
        ("nack_once_per_offset", one, [
            boot,
            ([Input(0, b"\x01\x02")], [Ack(2), r(h1, 0, [b"\x01", b"\x02"])]),
            ([Input(4, b"\x05")], [Nack(2)]),                       # bytes 2..3 lost
            ([Input(5, b"\x06"), Input(6, b"\x07")], []),           # same gap again: no second NACK
            ([Input(2, b"\x03\x04\x05\x06")],                       # fills the gap; bytes 4..6 were held
             [Ack(7), r(h1, 2, [b"\x03", b"\x04", b"\x05", b"\x06", b"\x07"])]),
            ([Input(9, b"\x0a")], [Nack(7)]),                       # a new gap at a new offset
        ]),
        ("selective_repeat_resend_only_the_lost_frame", one, [
            boot,
            ([Input(0, b"\x01\x02")], [Ack(2), r(h1, 0, [b"\x01", b"\x02"])]),
            ([Input(4, b"\x05\x06")], [Nack(2)]),                   # frame [2, 4) lost: [4, 6) is held
            ([Input(6, b"\x07")], []),                              # extends the held run
            ([Input(4, b"\x05")], []),                              # inside the held run: nothing new
            ([Input(2, b"\x03\x04")],                               # the lost frame alone: all of it runs
             [Ack(7), r(h1, 2, [b"\x03", b"\x04", b"\x05", b"\x06", b"\x07"])]),
            ([Input(7, b"\x08")], [Ack(8), r(h1, 7, [b"\x08"])]),
        ]),
        ("selective_repeat_nacks_a_damaged_frame", one, [
            boot,
            ([Input(0, b"\x01\x02")], [Ack(2), r(h1, 0, [b"\x01", b"\x02"])]),
            (_corrupt_crc(Input(2, b"\x03\x04"), 5), [Nack(2)]),   # damaged: asked for at once
            ([Input(4, b"\x05")], []),                              # held; the gap was NACKed already
            (_corrupt_crc(Input(2, b"\x03\x04"), 6), [Nack(2)]),   # damaged again: every time
            ([Input(2, b"\x03\x04")], [Ack(5)] + [r(h1, 2, [b"\x03", b"\x04", b"\x05"])] * 2),  # twice now
            (_corrupt_crc(Input(5, b"\x06"), 7), [Nack(5)]),
        ]),
        ("selective_repeat_results_twice_after_damage", one, [
            boot,
            (_corrupt_crc(Ping(b"x"), 8), [Nack(0)]),              # the line damages frames:
        ] + [([Input(k, bytes([k + 1]))],                          # the next REPEAT_RESULTS RESULTs go out twice
              [Ack(k + 1)] + [r(h1, k, [bytes([k + 1])])] * (2 if k < REPEAT_RESULTS else 1))
             for k in range(REPEAT_RESULTS + 1)]),
        ("selective_repeat_two_gaps", one, [
            boot,
            ([Input(3, b"\x04"), Input(5, b"\x06")], [Nack(0)]),    # [0,3) and [4,5) lost; only [3,4) held
            ([Input(0, b"\x01\x02\x03")],                          # fills the first gap and takes the held byte
             [Ack(4), r(h1, 0, [b"\x01", b"\x02", b"\x03", b"\x04"])]),
            ([Input(6, b"\x07")], [Nack(4)]),                       # [5, 6) was not kept: asked for once
            ([Input(4, b"\x05\x06")], [Ack(7), r(h1, 4, [b"\x05", b"\x06", b"\x07"])]),
        ]),
        ("selective_repeat_holds_at_most_max_payload", one, [
            boot,
            ([Input(1, b"\x03" * 200)], [Nack(0)]),                 # 200 bytes held
            ([Input(201, bytes(100))], []),                          # 300 would exceed max_payload: dropped
            ([Input(0, b"\x03")], [Ack(201), r(h1, 0, [b"\x03"] * 201)]),
            ([Input(202, b"\x09")], [Nack(201)]),                   # byte 201 is still missing
            ([Begin(300)], [Ack(300)]),                              # BEGIN forgets what was held
            ([Input(300, b"\x0b")], [Ack(301), r(h1, 300, [b"\x0b"])]),
        ]),
        ("duplicate_input_is_acked_not_rerun", one, [
            boot,
            ([Input(0, b"\x01\x02\x03")], [Ack(3), r(h1, 0, [b"\x01", b"\x02", b"\x03"])]),
            ([Input(0, b"\x01\x02\x03")], [Ack(3)]),                # all old: ACK again, no RESULT
            ([Input(1, b"\x02\x03\x04")], [Ack(4), r(h1, 3, [b"\x04"])]),  # overlap: only byte 3 is new
        ]),
        ("malformed_frames", one, [
            boot,
            (_corrupt_crc(Ping(b"ok"), 9), [Nack(0)]),              # bad CRC: dropped, NACKed (selective repeat)
            (encode_message(Ping(b"\x01" * (MAX_PAYLOAD + 50)), 10), [Nack(0)]),  # oversize: dropped, NACKed
            (encode_frame(0x7E, 41), [ErrorMsg(1, 41, "unknown message type")]),
            (encode_frame(0x83, 42, bytes(4)), [ErrorMsg(1, 42, "unknown message type")]),  # a device message
            (encode_frame(0x81, 47), [ErrorMsg(1, 47, "unknown message type")]),
            (encode_frame(Begin.TYPE, 43, b"\x01\x00\x00"), [ErrorMsg(2, 43, "payload does not parse")]),
            (encode_frame(Input.TYPE, 44, b"\x01"), [ErrorMsg(2, 44, "payload does not parse")]),
            (encode_frame(HelloRequest.TYPE, 45, b"\x00"), [ErrorMsg(2, 45, "payload does not parse")]),
            (_frame_with_version(PROTOCOL_VERSION - 1, HelloRequest.TYPE, 46),
             [ErrorMsg(4, PROTOCOL_VERSION - 1, "unsupported protocol version")]),
            ([Ping(b"ok")], [Pong(b"ok")]),                         # and the device carries on
        ]),
    ]
    fail = config("fail_byte_238", fail_byte=238)
    hf = hello_for(fail)
    recs = [b"\x01", b"\x02", b"\xee", b"\x04", b"\x05"]
    convs.append(("invoke_failure_splits_the_batch", fail, [
        ([], [hf]),
        ([Input(0, b"".join(recs))], [Ack(5), r(hf, 0, recs[:2]), ErrorMsg(3, 2, "Invoke failed"),
                                      r(hf, 3, recs[3:])]),
        ([Input(5, b"\x06")], [Ack(6), r(hf, 5, [b"\x06"])]),      # the record after still runs
    ]))
    seven = config("seven_byte_records", inputs="9:7:0.5:0", outputs="9:3:0.25:1")
    h7 = hello_for(seven)
    stream = bytes((k * 37 + 5) % 256 for k in range(70))
    rec = [stream[i:i + 7] for i in range(0, 70, 7)]
    split: list[Step] = [([], [h7])]
    for off in range(0, 70, 12):                                    # 12-byte frames cut records anywhere
        end = min(off + 12, 70)
        done = list(range(off // 7, end // 7))                     # records this frame completes
        split.append(([Input(off, stream[off:end])], [Ack(end)] + ([r(h7, done[0], rec[done[0]:done[-1] + 1])]
                                                                   if done else [])))
    split += [
        ([Input(70, stream[:3])], [Ack(73)]),                       # part of record 10
        ([Begin(5)], [Ack(35)]),                                    # BEGIN drops it and moves the position
        ([Input(35, rec[1])], [Ack(42), r(h7, 5, rec[1:2])]),
    ]
    convs.append(("batch_split_across_frames", seven, split))
    big = config("hundred_byte_record", inputs="9:10x10:0.5:0", outputs="9:1x4:0.5:0")
    hb = hello_for(big)
    record = bytes((k * 11 + 3) % 256 for k in range(100))
    convs.append(("record_chunked_over_four_frames", big, [([], [hb])] + [
        ([Input(off, record[off:off + 30])], [Ack(min(off + 30, 100))] + ([r(hb, 0, [record])] if off == 90 else []))
        for off in range(0, 100, 30)]))
    two = config("two_tensors", inputs="9:1x3:0.5:0,1:2:0.0:0", outputs="9:1x2:0.25:3,2:1:0.0:0")
    h2 = hello_for(two)
    recs11 = [bytes((r_ * 31 + k * 5 + 1) % 256 for k in range(11)) for r_ in range(3)]
    convs.append(("begin_acks_the_offset_of_its_record", two, [
        ([], [h2]),
        ([Begin(0)], [Ack(0)]), ([Begin(7)], [Ack(77)]), ([Begin(1000)], [Ack(11000)]),  # 3 + 8 = 11-byte records
        ([Begin(4)], [Ack(44)]),
        ([Input(44, b"".join(recs11))], [Ack(77), r(h2, 4, recs11)]),  # the ACK comes before any RESULT
    ]))
    convs += _timed_loop_conversations()
    return convs


def _timed_loop_conversations() -> list[tuple[str, dict, list[Step]]]:
    """TIMED_LOOP_REQ: the last record rerun until the inferences add up to min_ms (the
    devices time every inference at 109 µs here, so 1 ms takes 10); refused without the
    capability, for a record that did not run last, or once part of the next record arrived."""
    looped = config("timed_loop", inputs="9:7:0.5:0", outputs="9:3:0.25:1", capabilities=int(Capability.TIMED_LOOP))
    hl = hello_for(looped)
    rec = bytes(range(3, 10))
    not_run = "not the record run last"
    plain = config("timed_loop_not_built")
    hp = hello_for(plain)
    return [
        ("timed_loop_reruns_the_last_record", looped, [
            ([], [hl]),
            ([TimedLoopRequest(0, 0)], [ErrorMsg(6, 0, not_run)]),            # nothing ran since boot
            ([Input(0, rec)], [Ack(7), _results(hl, 0, [rec])]),
            ([TimedLoopRequest(0, 0)], [TimedLoop(0, 1, 0, 0)]),              # min_ms 0: once
            ([TimedLoopRequest(0, 1)], [TimedLoop(0, 10, 0, 0)]),             # 10 × 109 µs >= 1 ms
            ([TimedLoopRequest(1, 1)], [ErrorMsg(6, 1, not_run)]),
            (encode_frame(TimedLoopRequest.TYPE, 60, b"\x00\x00\x00\x00"), [ErrorMsg(2, 60, "payload does not parse")]),
            ([Input(7, rec[:3])], [Ack(10)]),                                 # part of record 1 overwrites it
            ([TimedLoopRequest(0, 0)], [ErrorMsg(6, 0, not_run)]),
        ]),
        ("timed_loop_not_built", plain, [
            ([], [hp]),
            ([Input(0, b"\x05")], [Ack(1), _results(hp, 0, [b"\x05"])]),
            (encode_message(TimedLoopRequest(0, 0), 61), [ErrorMsg(1, 61, "unknown message type")]),
        ]),
    ]


def message_row(msg) -> dict:
    """A device message as the conversation file records it (what the replayers compare)."""
    fields = {k: v for k, v in _fields(msg).items() if k not in TIMING_FIELDS}
    return {"type": type(msg).__name__, "fields": fields}


def _host_wire(host, start_seq: int) -> tuple[bytes, int]:
    if isinstance(host, bytes):
        return host, start_seq
    wire = b"".join(encode_message(m, start_seq + i) for i, m in enumerate(host))
    return wire, start_seq + len(host)


def build() -> dict:
    convs, seq = [], 100
    for name, cfg, steps in _conversations():
        rows = []
        for host, expected in steps:
            wire, seq = _host_wire(host, seq)
            rows.append({"host": wire.hex(), "device": [message_row(m) for m in expected]})
        convs.append({"name": name, "device": cfg, "steps": rows})
    return {"protocol_version": PROTOCOL_VERSION, "compared": "message type and fields, except "
            + ", ".join(TIMING_FIELDS) + "; LOG frames and seq numbers are not compared",
            "conversations": convs}


def load() -> list[dict]:
    return json.loads(PATH.read_text())["conversations"]


def main() -> None:
    write_or_check(PATH, build())


if __name__ == "__main__":
    main()
