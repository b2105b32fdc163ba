"""Conversation vectors (deploykit/protocol/conversations.json) replayed against both devices.

Each conversation is host frames in and device frames out for one device configuration.
The virtual board's DeviceEngine (with a firmware stub running the conversations' stand-in
model) and the C++ core (tests/cpp/posix_device.cpp over pipes, whose fake inference is
that model) must both answer every step with exactly the expected messages, in order.
"""

from __future__ import annotations

import json

import pytest
from test_protocol_cpp import DeviceProc

from deploykit.protocol import (
    FrameDecoder,
    Input,
    Log,
    Ping,
    Pong,
    ResultBatch,
    conversations,
    decode_message,
    encode_message,
)
from deploykit.protocol.framing import Frame
from deploykit.virtual_board import DeviceEngine, FaultInjector
from deploykit.virtual_board.cost import InferenceCost
from deploykit.virtual_board.firmware import Firmware

CONVERSATIONS = conversations.load()


def test_conversation_file_is_not_stale():
    """conversations.json is what conversations.py builds (regenerate with its __main__)."""
    assert conversations.PATH.read_text() == json.dumps(conversations.build(), indent=1) + "\n"


def test_conversations_cover_the_device_behaviours():
    """The behaviours the two hand-written suites used to check each live in a conversation."""
    names = {c["name"] for c in CONVERSATIONS}
    assert names >= {"hello_and_ping", "clean_batch", "nack_once_per_offset", "duplicate_input_is_acked_not_rerun",
                     "malformed_frames", "invoke_failure_splits_the_batch", "batch_split_across_frames"}
    kinds = {m["type"] for c in CONVERSATIONS for s in c["steps"] for m in s["device"]}
    assert kinds >= {"Hello", "Pong", "Ack", "Nack", "ResultBatch", "ErrorMsg"}


def _rows(msgs) -> list[dict]:
    """Messages as the file records them; LOGs are not part of a conversation."""
    return [conversations.message_row(m) for m in msgs if not isinstance(m, Log)]


# ----------------------------------------------------------------------------- Python engine

class StandInRunner:
    """The conversations' stand-in model as a virtual-board runner (invoke_raw)."""

    def __init__(self, out_record: int, fail_byte: int | None):
        self.out_record, self.fail_byte = out_record, fail_byte

    def invoke_raw(self, inputs: list[bytes]) -> list[bytes]:
        record = b"".join(inputs)
        if record[0] == self.fail_byte:
            raise RuntimeError("stand-in model: fail byte")
        return [conversations.fake_outputs(record, self.out_record)]


def _engine(cfg: dict) -> DeviceEngine:
    hello = conversations.hello_for(cfg)
    runner = StandInRunner(hello.output_record_bytes, cfg["fail_byte"])
    fw = Firmware(hello, runner, InferenceCost(7000, 109), b"\r\nconversation board\r\n", "stand-in model")
    return DeviceEngine(fw, FaultInjector(), timed=False)


def _engine_says(engine: DeviceEngine, hello, t: float) -> list:
    decoder, msgs = FrameDecoder(4096), []
    for _, data, is_frame in engine.take_output(t):
        if is_frame:
            msgs += [decode_message(e, hello) for e in decoder.feed(data) if isinstance(e, Frame)]
    return msgs


@pytest.mark.parametrize("conv", CONVERSATIONS, ids=lambda c: c["name"])
def test_python_engine_follows_the_conversation(conv):
    engine = _engine(conv["device"])
    hello = conversations.hello_for(conv["device"])
    for i, step in enumerate(conv["steps"]):
        t = 1.0 + i
        engine.receive(bytes.fromhex(step["host"]), t)
        assert _rows(_engine_says(engine, hello, t)) == step["device"], f"step {i}"


# ----------------------------------------------------------------------------- C++ device

CPP_CYCLES, CPP_MICROS = 7000, 109  # posix_device's timing: cycles = CPP_CYCLES + input[0] % 3


def _cpp_args(cfg: dict) -> list[str]:
    args = ["--cycles", str(CPP_CYCLES), "--micros", str(CPP_MICROS),
            "--board", cfg["board_id"], "--sha", cfg["model_sha256"], "--hz", str(cfg["cpu_hz"]),
            "--timer", str(cfg["timer"]), "--arena", "{}:{}".format(*cfg["arena"]), "--window", str(cfg["window"]),
            "--inputs", cfg["inputs"], "--outputs", cfg["outputs"], "--capabilities", str(cfg.get("capabilities", 0))]
    return args + (["--fail-byte", str(cfg["fail_byte"])] if cfg["fail_byte"] is not None else [])


def _note_inputs(host: bytes, stream: dict[int, int]) -> None:
    """Remember the stream bytes the host's INPUT frames carry (the latest write wins)."""
    for event in FrameDecoder(4096).feed(host):
        if isinstance(event, Frame) and event.type == Input.TYPE and len(event.payload) >= 4:
            msg = Input.parse(event.payload)
            stream.update((msg.offset + k, b) for k, b in enumerate(msg.data))


def _check_cpp_timing(msgs: list, stream: dict[int, int], in_record: int) -> None:
    """The C++ device's timing goes with the right record: the part conversations leave out."""
    for msg in msgs:
        if isinstance(msg, ResultBatch):
            firsts = [stream[(msg.first_record + i) * in_record] for i in range(len(msg.outputs))]
            assert list(msg.cycles) == [CPP_CYCLES + b % 3 for b in firsts], msg
            assert list(msg.micros) == [CPP_MICROS] * len(firsts), msg


def _cpp_says(dev: DeviceProc, host: bytes, step: int, expected: int) -> list:
    """Send a step's frames; its answers are what arrives before the PONG of a sentinel PING.

    The sentinel goes once `expected` answers are in (a RESET's reboot loses what was
    buffered behind it, as a board does); the core answers frames in order, so anything
    extra the step makes arrives before the PONG, and no quiet period decides a step is over."""
    dev.write(host)
    sentinel = Ping(f"conversation step {step}".encode())
    sent = False
    while True:
        answers = [m for m in dev.pending if not isinstance(m, Log)]
        if not sent and len(answers) >= expected:
            dev.write(encode_message(sentinel, 0xFF00 + step))
            sent = True
        for k, msg in enumerate(dev.pending):
            if sent and msg == Pong(sentinel.data):
                got, dev.pending = dev.pending[:k], dev.pending[k + 1:]
                return got
        assert dev._pump(5.0), f"step {step}: 5 s without an answer; got so far {answers}"


@pytest.mark.parametrize("conv", CONVERSATIONS, ids=lambda c: c["name"])
def test_cpp_device_follows_the_conversation(cpp_programs, conv):
    dev = DeviceProc(cpp_programs["posix_device"], _cpp_args(conv["device"]))
    try:
        assert conv["device"]["max_payload"] == conversations.MAX_PAYLOAD  # the core's compiled DK_MAX_PAYLOAD
        stream: dict[int, int] = {}
        in_record = conversations.hello_for(conv["device"]).input_record_bytes
        for i, step in enumerate(conv["steps"]):
            _note_inputs(bytes.fromhex(step["host"]), stream)
            got = _cpp_says(dev, bytes.fromhex(step["host"]), i, len(step["device"]))
            assert _rows(got) == step["device"], f"step {i}"
            _check_cpp_timing(got, stream, in_record)
        assert dev.close()["sent"] > 0
    finally:
        if dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait()
