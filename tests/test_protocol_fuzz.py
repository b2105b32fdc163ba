"""The Python decoder raises only its documented error: ProtocolError (FrameDecoder never raises).

10^5 random and mutated byte strings, built from the shared vectors: mutated payloads are
framed with a valid CRC (else nearly all would stop at the CRC and prove nothing), and
mutated wire bytes go through the frame decoder. Hypothesis draws the seeds (derandomized,
so a run is repeatable); each seed drives a fast batch of cases.
"""

from __future__ import annotations

import contextlib
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from deploykit.protocol import FrameDecoder, MsgType, ProtocolError, decode_message, vectors
from deploykit.protocol.framing import Frame

VECTORS = json.loads(vectors.PATH.read_text())
PAYLOADS = [(row["type"], bytes.fromhex(row["payload"])) for row in VECTORS["frames"]]
WIRES = [bytes.fromhex(row["wire"]) for row in VECTORS["frames"]]
TYPES = [int(t) for t in MsgType] + [0x00, 0x7F, 0xEE, 0xFF]
BATCH = 1000
SEEDS = 100  # SEEDS x BATCH = 10^5 cases


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits: flip, set, insert, delete, truncate, extend, splice."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[at % len(out)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 3 and out:
            del out[at:at + rng.randint(1, 8)]
        elif kind == 4:
            del out[at:]
        elif kind == 5:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        else:
            other = rng.choice(PAYLOADS)[1]
            out[at:] = other[rng.randrange(len(other) + 1):]
    return bytes(out)


def decode_or_protocol_error(frame: Frame) -> None:
    """decode_message either returns a message or raises ProtocolError; anything else fails."""
    with contextlib.suppress(ProtocolError):
        decode_message(frame, vectors.HELLO)


def one_case(rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.7:  # a mutated payload behind a valid CRC
        msg_type, payload = rng.choice(PAYLOADS)
        if rng.random() < 0.1:
            msg_type = rng.choice(TYPES)
        version = 2 if rng.random() < 0.95 else rng.randrange(256)
        decode_or_protocol_error(Frame(version, msg_type, rng.randrange(0x10000), mutate(rng, payload)))
    elif roll < 0.85:  # random bytes as a payload
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
        decode_or_protocol_error(Frame(2, rng.choice(TYPES), 0, payload))
    else:  # mutated wire bytes through the frame decoder
        wire = mutate(rng, b"".join(rng.sample(WIRES, 2)))
        for event in FrameDecoder(rng.choice((32, 256, 4096))).feed(wire):
            if isinstance(event, Frame):
                decode_or_protocol_error(event)


# slow: thousands of cases; the fast loop keeps any payload of any type
# (test_any_payload_of_any_type_raises_only_protocol_error) and random wire bytes
# (test_protocol.py::test_random_bytes_never_crash_the_decoder)
@pytest.mark.slow
@settings(max_examples=SEEDS, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_mutated_and_random_bytes_raise_only_protocol_error(seed):
    rng = random.Random(seed)
    for _ in range(BATCH):
        one_case(rng)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(msg_type=st.sampled_from(TYPES), payload=st.binary(max_size=200))
def test_any_payload_of_any_type_raises_only_protocol_error(msg_type, payload):
    decode_or_protocol_error(Frame(2, msg_type, 0, payload))


def test_an_unknown_timer_kind_is_a_protocol_error_naming_it():
    payload = bytearray(vectors.HELLO.payload())
    payload[6] = 9  # timer:u8 follows version, flags, max_payload, rx_window
    try:
        decode_message(Frame(2, MsgType.HELLO, 0, bytes(payload)))
    except ProtocolError as exc:
        assert "timer kind 9" in str(exc)
    else:
        raise AssertionError("a HELLO with timer kind 9 parsed")
