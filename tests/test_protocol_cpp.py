"""The firmware's C++ protocol core (firmware_templates/src/dk_protocol.*) against the Python one.

The core is compiled once per session with the host g++ (conftest.cpp_programs) into two
programs from tests/cpp/: a vector checker (fed requests as hex lines over a pipe) that is held against
deploykit/protocol/vectors.json, the same file tests/test_protocol.py checks the Python side
with; and a device (the core behind a POSIX adapter, with a fake inference whose outputs
the tests predict) driven through pipes or a pty with deploykit.protocol. The device
behaviour both devices share (gaps, duplicates, bad frames, failed inferences, records across
frames) is checked by the conversation vectors in tests/test_conversations.py; what stays
here is particular to the C++ device (stats, FIFO, banner, seq, pty, the harness over it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import struct
import subprocess
import time
from pathlib import Path

import pytest
from cobs import cobs
from hypothesis import given, settings, strategies as st

from deploykit.protocol import (
    Ack,
    Begin,
    FrameDecoder,
    FrameError,
    Hello,
    HelloRequest,
    Input,
    Log,
    Nack,
    Ping,
    Pong,
    Reset,
    ResultBatch,
    decode_message,
    encode_message,
    vectors,
    wire_size,
)
from deploykit.protocol.framing import Frame, encode_frame
from deploykit.protocol.spec import Capability, DType

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads(vectors.PATH.read_text())
MAX_PAYLOAD = 256  # the core's default DK_MAX_PAYLOAD, which the device program keeps


# ----------------------------------------------------------------------------- vector checker

class Checker:
    """The vector checker as a function: one request line in, its answer out."""

    def __init__(self, exe: Path):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, *words) -> str:
        self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def wire(self, *words) -> bytes:
        answer = self.ask(*words)
        assert answer.startswith("wire "), answer
        return bytes.fromhex(answer[5:])

    def decode(self, max_payload: int, wire: bytes) -> list[str]:
        self.proc.stdin.write(f"decode {max_payload} {_hex(wire)}\n")
        self.proc.stdin.flush()
        lines = []
        while (line := self.proc.stdout.readline().strip()) != "end":
            assert line, "vector checker died"
            lines.append(line)
        return lines

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def checker(cpp_programs):
    c = Checker(cpp_programs["vector_checker"])
    yield c
    c.close()


def _hex(data: bytes) -> str:
    return data.hex() or "-"


def _frame_line(frame: Frame) -> str:
    return f"frame {frame.type} {frame.seq} {_hex(frame.payload)}"


def _spec_arg(specs) -> str:
    return ",".join(f"{s['dtype']}:{'.'.join(map(str, s['shape']))}:{struct.pack('>f', s['scale']).hex()}:"
                    f"{s['zero_point']}" for s in specs) or "-"


def _writer_request(row) -> list | None:
    """The checker request that makes the core's message writer produce this row's frame."""
    f, seq, name = row["fields"], row["seq"], row["name"]
    if row["type"] in (0x83, 0x84):
        return ["u32", row["type"], seq, f.get("next_offset", f.get("expected_offset"))]
    if row["type"] == 0x82:
        return ["text", 0x82, seq, _hex(bytes.fromhex(f["data"])), "-"]
    if row["type"] == 0x87:
        return ["text", 0x87, seq, "-", _hex(f["text"].encode())]
    if row["type"] == 0x86:
        return ["error", seq, f["code"], f["detail"], _hex(f["text"].encode())]
    if row["type"] == 0x85:
        outputs = [bytes.fromhex(o) for o in f["outputs"]]
        return ["result", seq, f["first_record"], len(outputs[0]), _hex(b"".join(outputs)),
                ",".join(map(str, f["cycles"])), ",".join(map(str, f["micros"]))]
    if row["type"] == 0x88:
        return ["result_part", seq, f["record"], f["offset"], f["cycles"], f["micros"], f["data"]]
    if row["type"] == 0x81:
        return ["hello", seq, _hex(f["board_id"].encode()), f["model_sha256"], f["cpu_hz"], f["timer"],
                f["arena_configured"], f["arena_used"], f["max_payload"], f["rx_window"],
                int(f["simulated"]), _spec_arg(f["inputs"]), _spec_arg(f["outputs"]),
                f["firmware_id"] or "-", f["capabilities"]]
    if row["type"] == 0x90:
        return ["optimes", seq, f["record"], f["first"], f["total"],
                ",".join(":".join(map(str, e)) for e in f["entries"]) or "-"]
    if row["type"] == 0x91:
        return ["chunk", seq, *(f[k] for k in ("record", "op", "n_ops", "output", "n_outputs", "tensor", "dtype",
                                              "total", "offset")), _hex(bytes.fromhex(f["data"]))]
    if row["type"] == 0x92:
        return ["timedloop", seq, f["record"], f["iterations"], f["cycles"], f["micros"]]
    assert row["type"] < 0x80, f"device message {name} has no C++ writer check: add one"
    return None


@pytest.mark.parametrize("row", VECTORS["frames"], ids=lambda r: r["name"])
def test_core_encodes_and_decodes_each_vector_frame(checker, row):
    wire = bytes.fromhex(row["wire"])
    assert checker.wire("frame", row["type"], row["seq"], row["payload"] or "-") == wire
    assert checker.decode(512, wire) == [f"frame {row['type']} {row['seq']} {row['payload'] or '-'}"]


@pytest.mark.parametrize("row", [r for r in VECTORS["frames"] if r["type"] >= 0x80], ids=lambda r: r["name"])
def test_core_message_writers_produce_the_vector_bytes(checker, row):
    assert checker.wire(*_writer_request(row)) == bytes.fromhex(row["wire"])


def test_every_device_message_type_has_a_vector():
    assert {r["type"] for r in VECTORS["frames"]} >= {0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x90, 0x91, 0x92}
    for row in VECTORS["frames"]:
        _writer_request(row)  # raises for a device message the writer checks do not cover


@pytest.mark.parametrize("row", VECTORS["streams"], ids=lambda r: r["name"])
def test_core_resynchronises_streams_like_the_vectors(checker, row):
    frames = [FrameDecoder(512).feed(bytes.fromhex(f))[0] for f in row["frames"]]
    got = checker.decode(row["max_payload"], bytes.fromhex(row["wire"]))
    assert [g for g in got if g.startswith("frame")] == [_frame_line(f) for f in frames]
    assert [g.split()[1] for g in got if g.startswith("error")] == row["error_kinds"]


@pytest.mark.parametrize("row", VECTORS["crc32"])
def test_core_crc32_matches_the_vector(checker, row):
    assert checker.ask("crc", row["data"]) == f"crc {row['crc']:08x}"


def test_empty_frame_vector(checker):
    assert checker.wire("frame", 1, 0, "-").hex() == VECTORS["empty_frame_wire"]


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=700), msg_type=st.integers(0, 255), seq=st.integers(0, 0xFFFF))
def test_core_frame_encoding_equals_python_on_any_payload(checker, payload, msg_type, seq):
    wire = encode_frame(msg_type, seq, payload)
    assert checker.wire("frame", msg_type, seq, _hex(payload)) == wire
    assert checker.decode(1024, wire) == [f"frame {msg_type} {seq} {_hex(payload)}"]


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=6), max_payload=st.sampled_from([32, 256, 1000]))
def test_core_decoder_agrees_with_python_on_any_bytes(checker, chunks, max_payload):
    wire = b"".join(chunks)
    py = []
    for event in FrameDecoder(max_payload).feed(wire):
        py.append(f"error {event.kind}" if isinstance(event, FrameError) else _frame_line(event))
    assert checker.decode(max_payload, wire) == py


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), min_size=1, max_size=12),
       st.integers(0, 2**32 - 1), st.integers(1, 9))
def test_core_result_runs_equal_python(checker, timings, first, out_record):
    timings = [t for t in timings for _ in range(1 + t[0] % 3)][:12]  # some repeats make runs
    outputs = tuple(bytes([(i * 7 + k) % 256 for k in range(out_record)]) for i in range(len(timings)))
    batch = ResultBatch(first, outputs, tuple(t[0] for t in timings), tuple(t[1] for t in timings))
    answer = checker.ask("result", 5, first, out_record, _hex(b"".join(outputs)),
                         ",".join(str(t[0]) for t in timings), ",".join(str(t[1]) for t in timings))
    if answer.startswith("full"):  # the core starts a new RESULT before it could overflow
        assert len(batch.payload()) + out_record + 13 > MAX_PAYLOAD
    else:
        assert bytes.fromhex(answer[5:]) == encode_message(batch, 5)


def test_core_cuts_long_log_text_at_a_utf8_boundary(checker):
    text = "é" * 200  # 400 bytes of 2-byte sequences; DK_MAX_PAYLOAD is 1024 in the checker
    wire = checker.wire("text", 0x87, 0, "-", _hex((text * 3).encode()))
    frame = FrameDecoder(2048).feed(wire)[0]
    assert frame.payload.decode("utf-8") == "é" * 512


# ----------------------------------------------------------------------------- the device

SHA = bytes(range(32))
# The vectors' HELLO as the core sends it: it adds SELECTIVE_ACK (it keeps frames after a gap)
CORE_HELLO = dataclasses.replace(vectors.HELLO, capabilities=int(Capability.SELECTIVE_ACK))
BASE_ARGS = ["--board", "nano33ble", "--sha", SHA.hex(), "--hz", "64000000", "--timer", "1",
             "--arena", "1040:932", "--window", "512", "--firmware-id", vectors.HELLO.firmware_id.hex(),
             "--inputs", "9:1x1:0.05859375:-128", "--outputs", "9:1x1:0.01171875:-26"]


def fake_outputs(record: bytes, out_record: int) -> bytes:
    """What posix_device.cpp's fake inference returns for one input record."""
    return bytes((record[i % len(record)] * 3 + 7 + i) % 256 for i in range(out_record))


def fake_cycles(record: bytes, base: int = 7000) -> int:
    return base + record[0] % 3


class DeviceProc:
    """The POSIX device over pipes, spoken to with deploykit.protocol."""

    def __init__(self, exe: Path, args: list[str]):
        self.proc = subprocess.Popen([str(exe), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.decoder = FrameDecoder(4096)
        self.seq = 0
        self.hello: Hello | None = None
        self.errors: list[FrameError] = []
        self.frames: list[Frame] = []
        self.pending: list = []

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def send(self, msg) -> bytes:
        wire = encode_message(msg, self.seq)
        self.seq += 1
        self.write(wire)
        return wire

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return False
        data = os.read(self.proc.stdout.fileno(), 65536)
        assert data, f"device exited: {self.proc.stderr.read().decode()}"
        for event in self.decoder.feed(data):
            if isinstance(event, FrameError):
                self.errors.append(event)
                continue
            self.frames.append(event)
            msg = decode_message(event, self.hello)
            if isinstance(msg, Hello):
                self.hello = msg
            self.pending.append(msg)
        return True

    def next(self, kind=object, timeout: float = 5.0):
        """Return the next message of `kind`, skipping LOGs unless asked for; fail on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                msg = self.pending.pop(0)
                if isinstance(msg, kind) and (kind is Log or not isinstance(msg, Log)):
                    return msg
                if not isinstance(msg, Log):
                    raise AssertionError(f"expected {kind.__name__}, got {msg}")
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind.__name__} within {timeout}s; frames so far: {self.frames[-5:]}"
            self._pump(left)

    def quiet(self, seconds: float = 0.3) -> list:
        """Everything but LOGs that arrives within `seconds` (expected: nothing)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._pump(left)
        got, self.pending = [m for m in self.pending if not isinstance(m, Log)], []
        return got

    def close(self) -> dict[str, int]:
        """End the input; return the device's exit statistics."""
        self.proc.stdin.close()
        self.proc.stdout.read()
        err = self.proc.stderr.read().decode()
        assert self.proc.wait(timeout=10) == 0, err
        line = next(ln for ln in err.splitlines() if ln.startswith("dk-stats"))
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


@pytest.fixture
def device(cpp_programs):
    started = []

    def start(*extra: str, base=BASE_ARGS) -> DeviceProc:
        dev = DeviceProc(cpp_programs["posix_device"], [*base, *extra])
        started.append(dev)
        assert isinstance(dev.next(Hello), Hello)
        return dev

    yield start
    for dev in started:
        if dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait()


def _records(n: int, size: int, start: int = 0) -> list[bytes]:
    return [bytes(((r + start) * 31 + k * 5 + 1) % 256 for k in range(size)) for r in range(n)]


def _check_results(results: list[ResultBatch], records: list[bytes], out_record: int, first: int = 0):
    got = {}
    for batch in results:
        for i, (out, cyc, us) in enumerate(zip(batch.outputs, batch.cycles, batch.micros, strict=True)):
            got[batch.first_record + i] = (out, cyc, us)
    want = {first + i: (fake_outputs(rec, out_record), fake_cycles(rec), 109) for i, rec in enumerate(records)}
    assert got == want


def test_boot_banner_then_hello_with_the_announced_fields(device):
    dev = device()
    assert dev.errors and dev.errors[0].raw.startswith(b"\r\nposix device booting")  # banner, dropped
    assert dev.hello == CORE_HELLO  # same fields as the vectors' HELLO: built by the real core
    assert dev.frames[0].seq == 0
    assert dev.next(Log).text == "posix device ready"
    dev.send(HelloRequest())
    assert dev.next(Hello) == CORE_HELLO
    assert [f.seq for f in dev.frames] == [0, 1, 2]
    assert dev.close()["frames"] == 1



def test_reset_reboots_with_a_banner_and_a_fresh_hello(device):
    dev = device()
    dev.send(Begin(5))
    assert dev.next(Ack) == Ack(5)
    n_errors = len(dev.errors)
    dev.send(Reset())
    assert dev.next(Hello) == CORE_HELLO
    assert dev.frames[-1].seq == 0  # seq counts since boot
    assert len(dev.errors) == n_errors + 1  # the boot banner again
    dev.send(Input(0, b"\x10"))  # the stream restarts at record 0
    assert dev.next(Ack) == Ack(1)
    assert dev.next(ResultBatch).first_record == 0


def test_reset_without_a_reboot_hook_restarts_the_core_in_place(device):
    dev = device("--soft-reset")
    dev.send(Input(0, b"\x01\x02"))
    assert dev.next(Ack) == Ack(2)
    dev.next(ResultBatch)
    n_errors = len(dev.errors)
    dev.send(Reset())
    assert dev.next(Hello) == CORE_HELLO
    assert dev.frames[-1].seq == 0 and len(dev.errors) == n_errors  # no banner: no reboot
    dev.send(Input(0, b"\x10"))
    assert dev.next(Ack) == Ack(1)




@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.name)
def test_core_record_sizes_follow_the_spec_dtypes(device, dtype):
    """dk_spec.h's DtypeSize is generated from spec.py: both sides size records alike."""
    dev = device("--inputs", f"{int(dtype)}:2x3:0.5:0")
    assert dev.hello.inputs[0].dtype is dtype  # the Python decoder knows every code the core sends
    dev.send(Begin(1))
    assert dev.next(Ack) == Ack(6 * dtype.itemsize)


def test_an_output_record_larger_than_a_frame_crosses_frames_as_result_parts(cpp_programs):
    """640 output bytes with a 256-byte max_payload: before, the core refused to compile
    (static_assert); now each record's outputs arrive as RESULT_PARTs within max_payload."""
    from deploykit.protocol import ResultPart
    from deploykit.protocol.spec import RESULT_PART_HEAD
    dev = DeviceProc(cpp_programs["posix_device_big"], [*BASE_ARGS, "--inputs", "9:1x16:0.5:0",
                                                         "--outputs", "9:1x640:0.1:0"])
    try:
        assert dev.next(Hello).output_record_bytes == 640
        records = _records(2, 16)
        dev.send(Input(0, b"".join(records)))
        assert dev.next(Ack) == Ack(32)
        parts = [dev.next(ResultPart) for _ in range(2 * 3)]  # 640 B in parts of 256 - 16
        assert dev.quiet() == []
    finally:
        dev.proc.kill()
        dev.proc.wait()
    assert all(len(p.data) <= MAX_PAYLOAD - RESULT_PART_HEAD for p in parts)
    for r, record in enumerate(records):
        mine = [p for p in parts if p.record == r]
        assert [p.offset for p in mine] == [0, 240, 480]
        assert b"".join(p.data for p in mine) == fake_outputs(record, 640)
        assert {(p.cycles, p.micros) for p in mine} == {(fake_cycles(record), 109)}




def test_many_records_in_one_frame_come_back_batched(device):
    dev = device("--inputs", "9:4:0.1:0", "--outputs", "9:1:0.1:0")
    records = _records(50, 4)
    dev.send(Input(0, b"".join(records)))
    assert dev.next(Ack) == Ack(200)
    batch = dev.next(ResultBatch)
    assert batch.first_record == 0 and len(batch.outputs) == 50  # one RESULT for the frame
    _check_results([batch], records, 1)
    assert len(set(batch.cycles)) == 3  # three timing runs' worth of distinct values


def test_a_full_result_batch_is_sent_and_a_new_one_started(device):
    dev = device("--inputs", "9:2:0.1:0", "--outputs", "9:60:0.1:0")
    records = _records(12, 2)
    dev.send(Input(0, b"".join(records)))
    assert dev.next(Ack) == Ack(24)
    results = [dev.next(ResultBatch) for _ in range(3)]  # (256 - 6 - 13) // 60 = 3 per RESULT
    assert [(r.first_record, len(r.outputs)) for r in results] == [(0, 3), (3, 3), (6, 3)]
    results.append(dev.next(ResultBatch))
    assert all(len(f.payload) <= MAX_PAYLOAD for f in dev.frames)
    _check_results(results, records, 60)


def test_crc_corrupted_frames_are_dropped_and_the_resend_recovers(device):
    dev = device()
    good = encode_message(Input(0, b"\x42"), 9)
    body = bytearray(cobs.decode(good[1:-1]))
    body[5] ^= 0x10  # a bit of the offset flipped on the wire: COBS still parses, the CRC does not
    dev.write(b"\x00" + cobs.encode(bytes(body)) + b"\x00")
    assert dev.quiet() == [Nack(0)]  # dropped, and asked for again at once (selective repeat)
    dev.write(good)
    assert dev.next(Ack) == Ack(1)
    _check_results([dev.next(ResultBatch)], [b"\x42"], 1)
    stats = dev.close()
    assert stats["crc"] == 1 and stats["frames"] == 1


def test_garbage_between_frames_is_skipped(device):
    dev = device()
    noise = [b"hello world\r\n", b"\x00\x00\x00", b"\xff" * 40, b"\x05\x01", bytes(range(1, 90)), b"\x00\x07"]
    records = _records(len(noise), 1)
    for i, junk in enumerate(noise):
        dev.write(junk)
        dev.send(Input(i, records[i]))
        # a damaged chunk is NACKed, and then RESULTs go out twice (selective repeat): skip both
        got = [dev.next(object)]
        while not (isinstance(got[-1], ResultBatch) and got[-1].first_record == i):
            got.append(dev.next(object))
        assert Ack(i + 1) in got and all(m in (Nack(i), Ack(i + 1)) or isinstance(m, ResultBatch) for m in got)
        _check_results([got[-1]], [records[i]], 1, first=i)
    stats = dev.close()
    assert stats["frames"] == len(noise) and stats["cobs"] + stats["short"] + stats["crc"] >= 3




def test_oversize_frames_are_dropped_and_the_device_carries_on(device):
    dev = device()
    dev.send(Ping(b"\x01" * (MAX_PAYLOAD + 50)))
    assert dev.quiet() == [Nack(0)]  # dropped as damaged: NACKed (selective repeat)
    dev.send(Ping(b"ok"))
    assert dev.next(Pong) == Pong(b"ok")
    assert dev.close()["overflow"] == 1





def test_logs_written_during_inference_are_whole_frames(device):
    dev = device("--log-in-infer")
    records = _records(5, 1)
    dev.send(Input(0, b"".join(records)))
    assert dev.next(Ack) == Ack(5)
    logs = [dev.next(Log) for _ in range(5)]
    assert {log.text for log in logs} == {"fake invoke"}
    stats = dev.close()
    assert stats["logs_dropped"] == 0


def _windowed_stream(dev: DeviceProc, records: list[bytes], chunk: int) -> list[ResultBatch]:
    """A host that keeps at most rx_window wire bytes of INPUT unacknowledged."""
    stream, window = b"".join(records), dev.hello.rx_window
    in_flight: list[tuple[int, int]] = []  # (end offset, wire bytes)
    offset, acked, results = 0, 0, []
    while acked < len(stream):
        while offset < len(stream):
            size = wire_size(4 + min(chunk, len(stream) - offset))
            assert size <= window
            if sum(w for _, w in in_flight) + size > window:
                break
            dev.send(Input(offset, stream[offset:offset + chunk]))
            in_flight.append((min(offset + chunk, len(stream)), size))
            offset += chunk
        msg = dev.next()
        if isinstance(msg, Ack):
            acked = msg.next_offset
            in_flight = [f for f in in_flight if f[0] > acked]
        elif isinstance(msg, ResultBatch):
            results.append(msg)
        else:
            raise AssertionError(f"unexpected {msg}")
    expected = len(records)
    while sum(len(r.outputs) for r in results) < expected:
        results.append(dev.next(ResultBatch))
    return results


def test_a_host_within_the_window_never_overflows_the_device(device):
    dev = device("--window", "120", "--infer-us", "3000", "--inputs", "9:6:0.1:0", "--outputs", "9:2:0.1:0")
    records = _records(40, 6)
    results = _windowed_stream(dev, records, chunk=20)
    _check_results(results, records, 2)
    stats = dev.close()
    assert stats["fifo_dropped"] == 0 and stats["crc"] + stats["cobs"] + stats["short"] == 0


def test_a_host_ignoring_the_window_loses_bytes(device):
    """The control for the test above: the device's FIFO model does overflow."""
    dev = device("--window", "120", "--infer-us", "30000", "--inputs", "9:6:0.1:0", "--outputs", "9:2:0.1:0")
    stream = b"".join(_records(40, 6))
    dev.write(b"".join(encode_message(Input(o, stream[o:o + 20]), o) for o in range(0, len(stream), 20)))
    dev.quiet(0.5)
    stats = dev.close()
    assert stats["fifo_dropped"] > 0


def test_device_over_a_pty_answers_pyserial(cpp_programs):
    import serial
    proc = subprocess.Popen([str(cpp_programs["posix_device"]), *BASE_ARGS, "--pty"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        with serial.Serial(path, 115200, timeout=0.2) as port:
            decoder, msgs = FrameDecoder(4096), []
            port.write(encode_message(HelloRequest(), 0) + encode_message(Input(0, b"\x21"), 1))
            deadline = time.monotonic() + 5
            while not any(isinstance(m, ResultBatch) for m in msgs) and time.monotonic() < deadline:
                for event in decoder.feed(port.read(256)):
                    if isinstance(event, Frame):
                        msgs.append(decode_message(event, vectors.HELLO))
        kinds = [type(m).__name__ for m in msgs if not isinstance(m, Log)]
        assert kinds[-3:] == ["Hello", "Ack", "ResultBatch"]
        assert msgs[-1].outputs == (fake_outputs(b"\x21", 1),)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert "dk-stats" in proc.stderr.read()


def test_harness_session_drives_the_cpp_device_over_a_pty(cpp_programs):
    """The harness's DeviceSession (deploykit/harness) against the real C++ core."""
    session = pytest.importorskip("deploykit.link.session", reason="deploykit.harness is not there yet")
    import numpy as np
    args = [*BASE_ARGS, "--window", "200", "--inputs", "9:5:0.1:0", "--outputs", "9:3:0.1:0",
            "--infer-us", "200", "--fail-byte", "238", "--pty"]
    proc = subprocess.Popen([str(cpp_programs["posix_device"]), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    records = [b"\x00" + r[1:] if r[0] == 238 else r for r in _records(300, 5)]
    records[17] = b"\xee" + records[17][1:]  # only this one fails on the device
    try:
        path = proc.stdout.readline().strip()
        with session.DeviceSession(path, 115200, expected_sha256=SHA.hex()) as dev:
            assert (dev.hello.board_id, dev.hello.rx_window) == ("nano33ble", 200)
            results = dev.infer(np.frombuffer(b"".join(records), dtype=np.uint8).reshape(300, 5))
            assert dev.ping(b"\x00pong\x00") == b"\x00pong\x00"
            assert dev.reset().board_id == "nano33ble"
            faults = dev.faults.as_dict()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    stats = dict(kv.split("=") for kv in proc.stderr.read().split()[1:])
    assert [r.record for r in results] == list(range(300))
    failed = [r.record for r in results if isinstance(r, session.SampleFailure)]
    assert failed == [17]
    for r in results:
        if r.record != 17:
            assert (r.outputs, r.cycles, r.micros) == (fake_outputs(records[r.record], 3),
                                                      fake_cycles(records[r.record]), 109)
    assert faults["crc_errors"] == 0 and stats["fifo_dropped"] == "0"


def _harness_outputs(exe: Path, extra: list[str], records: list[bytes], out_record: int):
    """Stream `records` to the C++ device over a pty with the harness's DeviceSession."""
    import numpy as np

    from deploykit.link.session import DeviceSession, SampleFailure
    args = [*BASE_ARGS, "--window", "200", "--inputs", f"9:{len(records[0])}:0.1:0",
            "--outputs", f"9:{out_record}:0.1:0", "--pty", *extra]
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert path, proc.stderr.read()
        with DeviceSession(path, 115200, expected_sha256=SHA.hex()) as dev:
            results = dev.infer(np.frombuffer(b"".join(records), dtype=np.uint8).reshape(len(records), -1))
            crc_errors = dev.faults.as_dict()["crc_errors"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not any(isinstance(r, SampleFailure) for r in results) and crc_errors == 0  # a clean link
    return np.stack([np.frombuffer(r.outputs, np.int8) for r in sorted(results, key=lambda r: r.record)])


@pytest.mark.parametrize("faults, rate", [("", 0.0), ("off_by_one=0.2,seed=5", 0.2), ("stuck=0.2,seed=5", 0.2)])
def test_harness_catches_a_cpp_device_with_wrong_outputs(cpp_programs, faults, rate):
    """The same output faults as the virtual board's, in the C++ device: the harness's
    agreement figure (report's metric) against the outputs the fake model should give drops
    by about the fault rate; the clean device agrees exactly."""
    import numpy as np

    from deploykit.model.reference import agreement
    records = _records(300, 5)
    got = _harness_outputs(cpp_programs["posix_device"], ["--faults", faults] if faults else [], records, 3)
    want = np.stack([np.frombuffer(fake_outputs(r, 3), np.int8) for r in records])
    figures = agreement(got, want, 0.1, 0)
    print(faults or "clean", figures["exact_fraction"], figures["max_abs_steps"])
    if not faults:
        assert figures["exact_fraction"] == 1.0
        return
    assert 1 - 2 * rate < figures["exact_fraction"] < 1 - rate / 2, figures
    if faults.startswith("off_by_one"):
        assert figures["max_abs_steps"] == 1


def test_cpp_device_refuses_a_bad_fault_spec(cpp_programs):
    for bad in ("off_by_one=2", "bogus=0.1", "stuck"):
        done = subprocess.run([str(cpp_programs["posix_device"]), *BASE_ARGS, "--faults", bad],
                              capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and "usage" in done.stderr, bad
