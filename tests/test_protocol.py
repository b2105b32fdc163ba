"""The Python side of the wire protocol against the shared vectors and under fuzzing."""

import contextlib
import json

import pytest
from hypothesis import given, settings, strategies as st

from deploykit.protocol import FrameDecoder, FrameError, decode_message, encode_message, vectors
from deploykit.protocol.framing import Frame, encode_frame, wire_size
from deploykit.protocol.messages import ProtocolError, ResultBatch

VECTORS = json.loads(vectors.PATH.read_text())


def test_committed_vectors_match_this_implementation():
    assert json.loads(json.dumps(vectors.build())) == VECTORS


@pytest.mark.parametrize("row", VECTORS["frames"], ids=lambda r: r["name"])
def test_each_message_round_trips_through_its_wire_bytes(row):
    events = FrameDecoder(512).feed(bytes.fromhex(row["wire"]))
    assert len(events) == 1 and isinstance(events[0], Frame)
    frame = events[0]
    assert (frame.type, frame.seq, frame.payload.hex()) == (row["type"], row["seq"], row["payload"])
    msg = decode_message(frame, vectors.HELLO)
    assert encode_message(msg, row["seq"]).hex() == row["wire"]
    assert wire_size(len(frame.payload)) >= len(bytes.fromhex(row["wire"]))


@pytest.mark.parametrize("row", VECTORS["streams"], ids=lambda r: r["name"])
def test_streams_resynchronise_after_garbage(row):
    events = FrameDecoder(row["max_payload"]).feed(bytes.fromhex(row["wire"]))
    frames = [e for e in events if isinstance(e, Frame)]
    errors = [e.kind for e in events if isinstance(e, FrameError)]
    expected = [FrameDecoder(512).feed(bytes.fromhex(f))[0] for f in row["frames"]]
    assert frames == expected
    assert errors == row["error_kinds"]


@pytest.mark.parametrize("row", VECTORS["streams"], ids=lambda r: r["name"])
def test_byte_at_a_time_feeding_gives_the_same_events(row):
    wire = bytes.fromhex(row["wire"])
    whole = FrameDecoder(256).feed(wire)
    decoder = FrameDecoder(256)
    piecewise = [e for b in wire for e in decoder.feed(bytes([b]))]
    assert piecewise == whole


def test_a_frame_of_an_unknown_type_decodes_to_unknown_not_an_error():
    """Forward compatibility (docs/protocol.md): newer device messages are skipped, not errors."""
    from deploykit.protocol import Unknown
    frame = FrameDecoder(512).feed(encode_frame(0xEE, 5, b"from a newer firmware"))[0]
    msg = decode_message(frame, vectors.HELLO)
    assert msg == Unknown(0xEE, b"from a newer firmware")
    assert encode_message(msg, 5) == encode_frame(0xEE, 5, b"from a newer firmware")


def test_hello_without_a_firmware_id_round_trips_as_empty():
    wire = encode_message(vectors.HELLO_BARE, 3)
    payload = FrameDecoder(4096).feed(wire)[0].payload
    assert bytes(16) in payload  # zeros on the wire
    assert decode_message(FrameDecoder(4096).feed(wire)[0]) == vectors.HELLO_BARE
    assert vectors.HELLO_BARE.firmware_id == b"" and vectors.HELLO.firmware_id != b""


def test_a_capability_the_firmware_lacks_is_bad_input_naming_the_render_option():
    from deploykit.errors import BadInput
    from deploykit.link.identity import require_capability
    from deploykit.protocol import Capability
    require_capability(vectors.HELLO_BARE, Capability.OP_TIMING, "--op-timing", "virtual://x")
    with pytest.raises(BadInput, match="--op-timing") as info:
        require_capability(vectors.HELLO, Capability.OP_TIMING, "--op-timing", "/dev/ttyACM0")
    assert info.value.exit_code == 2 and "per-operator timing" in str(info.value)


def test_result_timings_run_length_encode_identical_values():
    batch = ResultBatch(0, tuple(bytes([i]) for i in range(200)), (7000,) * 200, (109,) * 200)
    payload = batch.payload()
    assert len(payload) == 6 + 200 + 2 + 2 + 1  # header, outputs, one varint run (200, 7000, 109)
    assert ResultBatch.parse_with(payload, 1) == batch


def test_result_with_runs_that_overshoot_is_refused():
    good = ResultBatch(0, (b"\x01", b"\x02"), (5, 5), (1, 1)).payload()
    bad = good[:-3] + bytes([3, 5, 1])  # a run of 3 for a count of 2
    with pytest.raises(ProtocolError):
        ResultBatch.parse_with(bad, 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=8))
def test_random_bytes_never_crash_the_decoder(chunks):
    decoder = FrameDecoder(256)
    for chunk in chunks:
        for event in decoder.feed(chunk):
            if isinstance(event, Frame):
                with contextlib.suppress(ProtocolError):
                    decode_message(event, vectors.HELLO)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_a_frame_after_any_garbage_is_recovered(payload, garbage):
    wire = encode_message(vectors.MESSAGES[4][1].__class__(3, payload), 9)
    events = FrameDecoder(512).feed(garbage + wire)
    frames = [e for e in events if isinstance(e, Frame)]
    assert frames and frames[-1].payload[4:] == payload
