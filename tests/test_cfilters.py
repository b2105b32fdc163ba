"""C filters: hostile or non-ASCII text becomes valid, harmless C identifiers and literals.

The literal checks compile real C++ with the host g++ and compare the bytes it stores.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from deploykit.firmware.cfilters import _C_KEYWORDS, c_bytes, c_comment, c_ident, c_string

HOSTILE = ['x"; system("rm -rf /"); //', "naïve ☃ модель", "*/ #include <evil> /*", "a\\\nb",
           "??/ trigraph", "", "123", "int", "__reserved", "\x00\x01\x7f", "tab\there"]
IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _unescape(literal: str) -> bytes:
    """Decode the only escapes c_string emits (3-digit octal) back to bytes."""
    assert literal[0] == literal[-1] == '"'
    body, out, i = literal[1:-1], bytearray(), 0
    while i < len(body):
        if body[i] == "\\":
            out.append(int(body[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(ord(body[i]))
            i += 1
    return bytes(out)


@pytest.mark.parametrize("text", HOSTILE)
def test_ident_is_valid_and_not_reserved(text):
    ident = c_ident(text)
    assert IDENT.match(ident), ident
    assert ident not in _C_KEYWORDS and "__" not in ident


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_string_literal_round_trips_and_stays_inert(text):
    literal = c_string(text)
    assert _unescape(literal) == text.encode("utf-8")
    inner = literal[1:-1]
    assert '"' not in inner and "\n" not in inner and "?" not in inner
    assert re.fullmatch(r'(\\[0-7]{3}|[\x20-\x7e])*', inner)


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_ident_and_comment_for_any_text(text):
    assert IDENT.match(c_ident(text))
    assert re.fullmatch(r"[\x20-\x7e]*", c_comment(text))
    assert "\\" not in c_comment(text) and "?" not in c_comment(text)


def test_bytes_initialiser_round_trips():
    data = bytes(range(256)) + b"\x00\xff"
    values = re.findall(r"0x([0-9a-f]{2})", c_bytes(data))
    assert bytes(int(v, 16) for v in values) == data
    assert c_bytes(b"") == ""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs the host g++ (CI installs it)")
def test_gpp_stores_exactly_the_text(tmp_path):
    """Compile and run: every hostile text is one identifier and one literal holding its bytes."""
    lines = ["#include <stdio.h>", "#include <string.h>"]
    for i, text in enumerate(HOSTILE):
        lines.append(f"// {c_comment(text)}")
        lines.append(f"static const char {c_ident(text)}_{i}[] = {c_string(text)};")
    names = [f"{c_ident(t)}_{i}" for i, t in enumerate(HOSTILE)]
    lines.append("int main() {")
    lines += [f'  fwrite({n}, 1, sizeof({n}) - 1, stdout); fputc(0xFF, stdout);' for n in names]
    lines.append("  return 0; }")
    src = tmp_path / "hostile.cpp"
    src.write_text("\n".join(lines) + "\n", encoding="ascii")
    exe = tmp_path / "hostile"
    subprocess.run(["g++", "-std=c++11", "-trigraphs", "-Wall", "-Werror", "-o", str(exe), str(src)],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True).stdout
    assert out.split(b"\xff")[:-1] == [t.encode("utf-8") for t in HOSTILE]
