"""The virtual board's device engine, driven with deploykit.protocol directly (no harness).

Behaviour follows docs/protocol.md "Device behaviour"; inference runs in real TFLM. The
behaviour shared with the C++ device is checked by tests/test_conversations.py; what stays
here is the engine's own (real models, time, the receive ring, stats, LOGs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.firmware.boards import load_board
from deploykit.model.tflite_model import parse
from deploykit.protocol import (
    Ack,
    Begin,
    ErrorMsg,
    Hello,
    Input,
    Log,
    Nack,
    Ping,
    Pong,
    Reset,
    ResultBatch,
    encode_message,
    wire_size,
)
from deploykit.protocol.vectors import PATH as VECTORS
from deploykit.virtual_board import DeviceEngine, FaultInjector, build_firmware
from deploykit.virtual_board.cost import op_cycles, timing_from_cycles
from deploykit.virtual_board.rawclient import RawClient

EXAMPLES = ("sine", "linear", "gestures")


class Wire:
    """Drive a DeviceEngine in simulated time; decode what it writes."""

    def __init__(self, firmware, timed=False, faults=None):
        self.engine = DeviceEngine(firmware, faults or FaultInjector(), timed=timed)
        self.client = RawClient(None)
        self.client.hello = firmware.hello
        self.times: list[float] = []

    def send(self, *msgs, t=1.0, seq=0):
        self.engine.receive(b"".join(encode_message(m, seq) for m in msgs), t)

    def raw(self, data: bytes, t=1.0):
        self.engine.receive(data, t)

    def take(self, until=1e9) -> list:
        self.engine.advance(until)
        out = []
        for when, data, _ in self.engine.take_output(until):
            msgs = self.client.feed(data)
            self.times += [when] * len(msgs)
            out += msgs
        return out


def quantize(x, spec):
    q = np.round(np.asarray(x, dtype=np.float64) / spec["scale"]) + spec["zero_point"]
    return np.clip(q, -128, 127).astype(np.int8)


def records_of(manifest, n):
    """n real test records in the model's input dtype, from the manifest's test data."""
    x = np.load(manifest.source_path("test_data"))["x"][:n]
    spec = manifest["inputs"][0]
    q = quantize(x, spec) if spec["dtype"] == "int8" else x.astype(spec["dtype"])
    return [q[i].tobytes() for i in range(len(q))]


def reference_outputs(manifest, records):
    """Outputs of tflite-micro's own Python interpreter, independent of deploykit's wrapper."""
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(manifest.model_bytes(), arena_size=256 * 1024)
    spec = manifest["inputs"][0]
    outs = []
    for rec in records:
        it.set_input(np.frombuffer(rec, dtype=spec["dtype"]).reshape(spec["shape"]), 0)
        it.invoke()
        outs.append(np.ascontiguousarray(it.get_output(0)).tobytes())
    return outs


@pytest.fixture(scope="module")
def firmwares(converted_examples):
    board = load_board("virtual")
    return {name: build_firmware(m, board) for name, m in converted_examples.items()}


def results(msgs) -> dict[int, bytes]:
    out = {}
    for m in msgs:
        if isinstance(m, ResultBatch):
            for i, o in enumerate(m.outputs):
                out.setdefault(m.first_record + i, o)
    return out


# ----- HELLO and boot --------------------------------------------------------------------

def test_boot_prints_banner_then_hello_and_labelled_arena(firmwares, converted_examples):
    wire = Wire(firmwares["sine"])
    msgs = wire.take()
    assert b"deploykit virtual board" in bytes(wire.client.text)
    hello = msgs[0]
    assert isinstance(hello, Hello) and hello.simulated
    assert isinstance(msgs[1], Log) and "simulated" in msgs[1].text and "projection" in msgs[1].text
    manifest = converted_examples["sine"]
    board = load_board("virtual")
    used = manifest["arena"]["projections"][board.arena_class]
    assert hello.arena_used == used
    assert hello.arena_configured == -(-used * 110 // 1600) * 16  # +10 %, rounded up to 16
    assert hello.model_sha256.hex() == manifest.sha256
    assert hello.board_id == "virtual" and hello.cpu_hz == board.clock_mhz * 1_000_000
    assert hello.rx_window == board.rx_buffer_bytes
    assert wire_size(hello.max_payload) <= hello.rx_window < wire_size(hello.max_payload + 1)
    assert [s.shape for s in hello.inputs] == [tuple(s["shape"]) for s in manifest["inputs"]]


def test_arena_configured_can_be_given(converted_examples):
    fw = build_firmware(converted_examples["sine"], load_board("virtual"), arena_configured=8000)
    assert fw.hello.arena_configured == 8000


def test_arena_too_small_fails_allocation_as_the_firmware_does(converted_examples):
    """The rendered firmware's AllocateTensors fails: arena_used 0, every record INVOKE_FAILED."""
    fw = build_firmware(converted_examples["sine"], load_board("virtual"), arena_configured=64)
    assert (fw.hello.arena_configured, fw.hello.arena_used) == (64, 0)
    wire = Wire(fw)
    boot = wire.take()
    assert any(isinstance(m, Log) and "AllocateTensors failed with a 64-byte arena" in m.text for m in boot)
    wire.send(Begin(0), Input(0, b"\x01\x02"))
    errors = [m for m in wire.take() if isinstance(m, ErrorMsg)]
    assert errors == [ErrorMsg(3, 0, "Invoke failed"), ErrorMsg(3, 1, "Invoke failed")]


def test_board_figures_come_from_the_board_file(converted_examples):
    board = load_board("nano33ble_sense")
    fw = build_firmware(converted_examples["gestures"], board)
    assert fw.hello.board_id == "nano33ble_sense"
    assert fw.hello.arena_used == converted_examples["gestures"]["arena"]["projections"]["cortex-m-cmsis-nn"]
    model = parse(converted_examples["gestures"].model_bytes())
    cycles = sum(op_cycles(op, board) for op in model.operators)   # the per-operator cost model
    assert fw.timing.cycles == cycles
    assert fw.timing.micros == cycles * 1_000_000 // (board.clock_mhz * 1_000_000)


def test_micros_timer_derives_cycles_from_microseconds():
    class Board:
        clock_mhz, timer = 240, "micros"
    timing = timing_from_cycles(12_345 * 2 + 2000, Board)
    assert timing.micros == round((12_345 * 2 + 2000) / 240)
    assert timing.cycles == timing.micros * 240


# ----- the shared test vectors -------------------------------------------------------------

def _vector(name):
    rows = json.loads(VECTORS.read_text())["frames"]
    return bytes.fromhex(next(r for r in rows if r["name"] == name)["wire"])


def test_answers_the_host_vectors(firmwares):
    wire = Wire(firmwares["sine"])  # sine: one int8 in, one int8 out, 1-byte records
    wire.take()
    wire.raw(_vector("hello_req"))
    assert isinstance(wire.take()[0], Hello)
    wire.raw(_vector("ping"))
    assert wire.take() == [Pong(b"\x00\x01\x02\xff")]
    wire.raw(_vector("begin"))                       # BEGIN 7
    assert wire.take() == [Ack(7)]
    wire.raw(_vector("input_one_record"))            # INPUT offset 7, one byte
    msgs = wire.take()
    assert msgs[0] == Ack(8)
    assert isinstance(msgs[1], ResultBatch) and msgs[1].first_record == 7 and len(msgs[1].outputs) == 1
    wire.raw(_vector("input_with_zero_bytes"))       # offset 300 > expected 8: a gap
    assert wire.take() == [Nack(8)]
    bad = wire.engine.stats["bad_frames"]
    wire.raw(_vector("input_long_cobs_block"))       # 304-byte payload > max_payload 245
    assert wire.take() == [Nack(8)] and wire.engine.stats["bad_frames"] == bad + 1   # dropped, NACKed
    wire.raw(_vector("reset"))
    assert isinstance(wire.take()[0], Hello)


def test_stream_vectors_resynchronise_after_garbage(firmwares):
    """Boot banners, bad CRC, truncated frames before a good frame: the good one is answered."""
    wire = Wire(firmwares["sine"])
    wire.take()
    ping = encode_message(Ping(b"ok"), 9)
    flipped = bytearray(ping)
    flipped[5] ^= 0x01                                           # CRC no longer matches
    for junk in (b"\r\nBooting deploykit...\r\n", bytes(flipped), ping[:-4] + b"\x00",
                 b"\x00" + bytes([9, 1, 2]) + b"\x00", b"\x00" + b"\x01" * 400 + b"\x00"):
        wire.raw(junk + ping)
        assert wire.take() == [Nack(0), Pong(b"ok")]  # a damaged chunk is NACKed (selective repeat)
    assert wire.engine.stats["bad_frames"] == 5             # each junk: one dropped chunk



# ----- the input stream --------------------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLES)
def test_outputs_equal_the_tflm_python_interpreter(name, firmwares, converted_examples):
    manifest = converted_examples[name]
    records = records_of(manifest, 20)
    wire = Wire(firmwares[name])
    wire.take()
    size = firmwares[name].in_record
    stream = b"".join(records)
    wire.send(Begin(0))
    for off in range(0, len(stream), 100):                      # chunks cut across records
        wire.send(Input(off, stream[off:off + 100]))
    got = results(wire.take())
    assert sorted(got) == list(range(20))
    assert [got[i] for i in range(20)] == reference_outputs(manifest, records)
    assert size == len(records[0])


def test_chunked_record_runs_once_complete(firmwares, converted_examples):
    fw = firmwares["gestures"]                                  # 96-byte records
    record = records_of(converted_examples["gestures"], 1)[0]
    wire = Wire(fw)
    wire.take()
    wire.send(Begin(0), Input(0, record[:40]))
    assert wire.take() == [Ack(0), Ack(40)]
    wire.send(Input(40, record[40:]))
    msgs = wire.take()
    assert msgs[0] == Ack(96) and results(msgs) == {0: reference_outputs(converted_examples["gestures"], [record])[0]}


def test_batched_records_come_back_in_results_within_max_payload(firmwares):
    fw = firmwares["sine"]
    wire = Wire(fw)
    wire.take()
    wire.send(Begin(0), Input(0, bytes(range(200))))
    msgs = wire.take()
    batches = [m for m in msgs if isinstance(m, ResultBatch)]
    assert sorted(results(msgs)) == list(range(200))
    assert all(len(b.payload()) <= fw.hello.max_payload for b in batches)
    assert len(batches) >= 1 and msgs[1] == Ack(200)





def test_failed_invoke_reports_error_and_consumes_the_record(firmwares):
    class Failing:
        def invoke_raw(self, inputs):
            raise RuntimeError("kernel returned kTfLiteError")
    fw = firmwares["sine"]
    broken = type(fw)(fw.hello, Failing(), fw.timing, fw.banner, fw.arena_note)
    wire = Wire(broken)
    wire.take()
    wire.send(Begin(4), Input(4, b"\x01"))
    msgs = wire.take()
    assert msgs[:2] == [Ack(4), Ack(5)]
    assert msgs[2] == ErrorMsg(3, 4, "Invoke failed")                # the C++ core's text
    assert isinstance(msgs[3], Log) and "kTfLiteError" in msgs[3].text and len(msgs) == 4


def test_reset_reboots_state_lost_seq_restarts(firmwares):
    wire = Wire(firmwares["sine"])
    wire.take()
    wire.send(Begin(0), Input(0, b"\x01\x02\x03"))
    wire.take()
    wire.send(Reset())
    msgs = wire.take()
    assert isinstance(msgs[0], Hello)
    assert wire.engine.seq == 2          # HELLO and LOG sent since boot
    wire.send(Input(3, b"\x04"))         # the old stream position is gone
    assert wire.take() == [Nack(0)]


# ----- time: results held back, receive buffer overflow -----------------------------------

def test_result_is_held_back_by_the_simulated_inference_time(firmwares):
    fw = firmwares["gestures"]
    wire = Wire(fw, timed=True)
    wire.take()
    wire.send(Begin(0), Input(0, bytes(96 * 2)), t=1.0)
    assert wire.take(until=1.0) == [Ack(0), Ack(192)]          # ACK at once
    assert wire.take(until=1.0 + 2 * fw.timing.seconds - 1e-7) == []
    late = wire.take(until=1.0 + 2 * fw.timing.seconds + 1e-9)
    assert sorted(results(late)) == [0, 1]


def test_bytes_beyond_the_receive_buffer_are_dropped_while_busy(firmwares):
    fw = firmwares["gestures"]
    wire = Wire(fw, timed=True)
    wire.take()
    wire.send(Begin(0), t=0.5)
    first = encode_message(Input(0, bytes(96)), 1)              # completes a record: CPU busy
    more = [encode_message(Input(96 * k, bytes(96)), k + 1) for k in (1, 2, 3)]
    assert len(b"".join(more[:2])) <= 256 < len(b"".join(more))  # the ring holds two of three
    wire.raw(first + b"".join(more), t=1.0)
    assert wire.engine.stats["dropped_rx"] == len(b"".join(more)) - 256
    msgs = wire.take()
    assert Ack(288) in msgs and Ack(384) not in msgs and sorted(results(msgs)) == [0, 1, 2]
    wire.send(Input(384, bytes(96)), t=2.0)                     # the host goes on: a gap
    assert wire.take() == [Nack(288)]

def test_bytes_are_buffered_not_lost_when_they_fit(firmwares):
    fw = firmwares["gestures"]
    wire = Wire(fw, timed=True)
    wire.take()
    wire.send(Begin(0), t=0.5)
    wire.raw(encode_message(Input(0, bytes(96)), 1) + encode_message(Ping(b"x" * 100), 2), t=1.0)
    assert wire.engine.stats["dropped_rx"] == 0
    msgs = wire.take()
    assert msgs[-1] == Pong(b"x" * 100)
    assert wire.times[-1] >= wire.times[-2]                     # answered after the RESULT


def test_result_batches_follow_the_cpp_room_rule(firmwares):
    """sine: 1-byte outputs, 245-byte payloads, timing (7338 cycles, 114 us) as one run:
    room while 6 + n + runs(n) + 1 + 13 <= 245, so a RESULT carries at most 221 records."""
    fw = firmwares["sine"]
    assert (fw.hello.max_payload, fw.out_record, fw.timing.cycles, fw.timing.micros) == (245, 1, 7338, 114)
    wire = Wire(fw)
    wire.take()
    wire.send(Begin(0), Input(0, bytes(241)), Input(241, bytes(59)))
    counts = [len(m.outputs) for m in wire.take() if isinstance(m, ResultBatch)]
    assert counts == [221, 20, 59]                   # a frame's records flush when it is done
