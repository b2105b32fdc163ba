"""hypothesis: random byte streams into the protocol decoder and the device never crash or hang."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from deploykit.firmware.boards import load_board
from deploykit.protocol import Begin, FrameDecoder, HelloRequest, Input, Ping, Reset, encode_frame, encode_message
from deploykit.protocol.framing import Frame, FrameError
from deploykit.virtual_board import DeviceEngine, FaultInjector, build_firmware
from deploykit.virtual_board.rawclient import RawClient

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

frames = st.one_of(
    st.builds(lambda r: encode_message(Begin(r), 1), st.integers(0, 2**32 // 97 - 1)),
    st.builds(lambda o, d: encode_message(Input(o, d), 2), st.integers(0, 600), st.binary(max_size=300)),
    st.builds(lambda d: encode_message(Ping(d), 3), st.binary(max_size=64)),
    st.just(encode_message(HelloRequest(), 4)),
    st.just(encode_message(Reset(), 5)),
    st.builds(lambda t, p: encode_frame(t, 6, p), st.integers(0, 255), st.binary(max_size=40)),
    st.binary(max_size=80),                                        # garbage
)


@pytest.fixture(scope="module")
def gestures_fw(converted_examples):
    return build_firmware(converted_examples["gestures"], load_board("virtual"))


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_decoder_never_raises_and_accounts_for_every_chunk(chunks):
    decoder = FrameDecoder(256)
    events = [e for c in chunks for e in decoder.feed(c)]
    assert all(isinstance(e, (Frame, FrameError)) for e in events)
    assert len(events) <= sum(c.count(0) for c in chunks)


@FUZZ
@given(st.lists(frames, max_size=25), st.lists(st.floats(0, 0.01), min_size=25, max_size=25))
def test_device_survives_random_streams(gestures_fw, pieces, gaps):
    engine = DeviceEngine(gestures_fw, FaultInjector(), timed=True)
    client = RawClient(None)
    client.hello = gestures_fw.hello
    engine.take_output(0.0)
    t = 0.1
    for piece, gap in zip(pieces, gaps, strict=False):
        t += gap
        engine.receive(piece, t, byte_time=1e-5)
    engine.advance(t + 10.0)
    out = b"".join(d for _, d, _ in engine.take_output(t + 10.0))
    client.feed(out)
    # every device frame decodes; the only non-frames are the boot banners, one a boot
    assert [e.kind for e in client.errors] == ["cobs"] * engine.stats["boots"]
    assert len(engine.rx) <= engine.capacity and not engine.out
