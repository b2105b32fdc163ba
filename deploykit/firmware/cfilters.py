"""Jinja2 filters that make model- and user-supplied text safe inside generated C/C++.

Anything from a manifest or the command line that lands in a template goes through one
of these: `c_ident` for identifiers, `c_string` for string literals, `c_bytes` for byte
arrays. They never pass a character through that could end a literal or a comment, start
a preprocessor line, or be mis-read by a compiler in another source charset.
"""

from __future__ import annotations

import keyword
import re

_C_KEYWORDS = frozenset([
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
    "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept", "const", "consteval", "constexpr",
    "constinit", "const_cast", "continue", "co_await", "co_return", "co_yield", "decltype", "default", "delete",
    "do", "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for",
    "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
    "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast",
    "requires", "restrict", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast",
    "struct", "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid",
    "typename", "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor",
    "xor_eq", "_Bool", "_Complex", "_Imaginary", "main"
])


def c_ident(text, prefix: str = "m") -> str:
    """A valid, non-reserved C/C++ identifier derived from `text` (ASCII letters, digits, _).

    Runs of other characters become one underscore; a leading digit, a keyword or a
    reserved form (leading underscore + capital, double underscore) gets `prefix_`.
    """
    ident = re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_")
    ident = re.sub(r"_+", "_", ident)
    if not ident:
        return prefix
    if ident[0].isdigit() or ident in _C_KEYWORDS or keyword.iskeyword(ident):
        ident = f"{prefix}_{ident}"
    return ident


def c_string(text) -> str:
    """A C string literal (with quotes) holding `text` as UTF-8.

    Printable ASCII passes except `"`, `\\` and `?` (trigraphs); everything else is an
    octal escape of three digits, so a following digit can never extend it.
    """
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        if 0x20 <= byte < 0x7F and ch not in '"\\?':
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_comment(text) -> str:
    """Text safe inside a // comment: printable ASCII without `\\` or `?` (no line
    continuation, no `??/` trigraph); anything else becomes `_`."""
    return re.sub(r"[^\x20-\x3e\x40-\x5b\x5d-\x7e]", "_", str(text))


def c_bytes(data: bytes, per_line: int = 16, indent: str = "    ") -> str:
    """The body of a C byte-array initialiser: `0x1c, 0x00, ...`, `per_line` per line."""
    data = bytes(data)
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start:start + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


FILTERS = {"c_ident": c_ident, "c_string": c_string, "c_bytes": c_bytes, "c_comment": c_comment}
