"""protocol/spec.py is the one source of the protocol's numbers; what is generated from it is current.

The C header the firmware includes and the tables of docs/protocol.md are generated
(`python -m deploykit.protocol.generate`); a stale copy fails here, as a stale
vectors.json does in test_protocol.py. The duplicate tables that used to disagree (four
dtype sets, five RESULT sizes) are gone, and one answer is pinned.
"""

from __future__ import annotations

import re

import pytest

from deploykit.protocol import DType, Hello, ProtocolError, TensorSpec, TimerKind, generate, spec
from deploykit.protocol.framing import Frame
from deploykit.protocol.messages import decode_message

ROOT = generate.ROOT


def test_committed_header_and_docs_tables_are_generated_from_the_spec():
    stale = [str(p) for p, text in generate.outputs().items() if p.read_text(encoding="utf-8") != text]
    assert stale == [], f"run `python -m deploykit.protocol.generate` to refresh {stale}"
    assert generate.main(["--check"]) == 0


def test_a_spec_change_makes_the_committed_files_stale(monkeypatch):
    monkeypatch.setattr(spec, "PROTOCOL_VERSION", spec.PROTOCOL_VERSION + 1)
    assert generate.main(["--check"]) == 1


def test_the_header_and_the_docs_carry_every_spec_entry():
    header = generate.HEADER_PATH.read_text()
    docs = generate.DOCS_PATH.read_text()
    assert f"kProtocolVersion = {spec.PROTOCOL_VERSION};" in header
    for d in DType:
        assert f"case {d.value}: return {d.itemsize};  // {d.name}" in header
        assert f"| {d.value} | {d.name} | {d.itemsize} |" in docs
    for t in spec.MsgType:
        assert f"= 0x{t.value:02X}," in header and f"| 0x{t.value:02x} | {t.name} |" in docs
    for c in spec.Capability:
        assert f"| {c.value.bit_length() - 1} | {c.name} |" in docs
    assert f"kResultOverhead = {spec.RESULT_OVERHEAD};" in header


def test_no_second_copy_of_the_protocol_numbers_is_left():
    """dk_protocol.* include dk_spec.h; render takes dtypes and RESULT sizes from the spec."""
    core = (ROOT / "firmware_templates/src/dk_protocol.h").read_text() + \
        (ROOT / "firmware_templates/src/dk_protocol.cpp").read_text()
    assert '#include "dk_spec.h"' in core
    assert not re.search(r"kProtocolVersion\s*=|enum MsgType|enum ErrorCode|case 9:|\+ 19 <=|= 13;", core)
    render = (ROOT / "deploykit/firmware/render.py").read_text()
    assert not re.search(r'"int8": \(9|RESULT_OVERHEAD = 19', render)
    docs = generate.DOCS_PATH.read_text()
    assert docs.count("| 0x81 | HELLO |") == 1 and "9 int8)" not in docs


def test_every_spec_dtype_travels_in_hello():
    """One dtype set: render, the C++ core and the Python decoder all carry bool and float16 now."""
    specs = tuple(TensorSpec(d, (2, 3), 0.5, -1) for d in DType)
    hello = Hello("b", bytes(32), 1, TimerKind.micros, 16, 8, 256, 512, specs, specs[:1])
    again = decode_message(Frame(spec.PROTOCOL_VERSION, spec.MsgType.HELLO, 0, hello.payload()))
    assert again == hello
    assert again.input_record_bytes == 6 * sum(spec.DTYPE_SIZES.values())


@pytest.mark.parametrize("code", [0, 5, 8, 11, 12, 255])
def test_a_dtype_outside_the_spec_is_a_protocol_error(code):
    """float64 (11) was in the C++ table only: it is not carried, by any side."""
    payload = bytearray(Hello("b", bytes(32), 1, TimerKind.micros, 16, 8, 256, 512,
                              (TensorSpec(DType.int8, (1,)),), (TensorSpec(DType.int8, (1,)),)).payload())
    payload[payload.index(b"\x01b") + 2 + 1] = code  # first input spec's dtype byte
    with pytest.raises(ProtocolError, match=f"dtype code {code}"):
        decode_message(Frame(spec.PROTOCOL_VERSION, spec.MsgType.HELLO, 0, bytes(payload)))


def test_dtype_table_gives_numpy_types_and_manifest_names():
    for d in DType:
        assert d.numpy.itemsize == d.itemsize and d.numpy.name == d.name
        assert DType[d.name] is d
