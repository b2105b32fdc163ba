"""Write the firmware's C header and the docs tables from spec.py (the protocol's one source).

`python -m deploykit.protocol.generate` rewrites firmware_templates/src/dk_spec.h and the
section of docs/protocol.md between the GENERATED markers; `--check` exits 1 when either
is stale instead (the tests do the same). Both live in the source checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploykit.protocol import spec

ROOT = Path(__file__).resolve().parents[2]
HEADER_PATH = ROOT / "firmware_templates" / "src" / "dk_spec.h"
DOCS_PATH = ROOT / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED from deploykit/protocol/spec.py: python -m deploykit.protocol.generate -->"
END = "<!-- END GENERATED -->"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.lower().split("_"))


def c_header() -> str:
    """dk_spec.h: the spec's numbers as C++11 constants in namespace dk."""
    lines = [
        "// Generated from deploykit/protocol/spec.py by `python -m deploykit.protocol.generate`.",
        "// Do not edit: change spec.py and regenerate (a test fails while this file is stale).",
        "#ifndef DK_SPEC_H_", "#define DK_SPEC_H_", "", "#include <stddef.h>", "#include <stdint.h>", "",
        "namespace dk {", "",
        f"const uint8_t kProtocolVersion = {spec.PROTOCOL_VERSION};", "",
        "// Frame types: host requests below 0x80, device messages from 0x80.",
        "enum MsgType : uint8_t {",
        *(f"  k{_camel(t.name)} = 0x{t.value:02X},  // {spec.MESSAGE_PAYLOADS[t]}" for t in spec.MsgType),
        "};", "",
        "enum ErrorCode : uint16_t {",
        *(f"  k{_camel(e.name)} = {e.value},  // detail = {spec.ERROR_DETAILS[e]}" for e in spec.ErrorCode),
        "};", "",
        "enum class TimerKind : uint8_t {",
        *(f"  k{_camel(t.name)} = {t.value},  // {spec.TIMER_NOTES[t]}" for t in spec.TimerKind),
        "};", "",
        "// HELLO capabilities (u32): optional requests this firmware was built with.",
        "enum Capability : uint32_t {",
        *(f"  kCap{_camel(c.name or '')} = 1u << {c.value.bit_length() - 1},  // {spec.CAPABILITY_NOTES[c]}"
          for c in spec.Capability),
        "};", "",
        f"const uint8_t kHelloFlagSimulated = 0x{spec.HELLO_FLAG_SIMULATED:02X};",
        *(f"const size_t k{_camel(name)} = {value};  // {note}" for name, (value, note) in spec.SIZES.items()),
        "",
        "// Bytes of one element of a TfLiteType code; 0 for a type the protocol does not carry.",
        "inline size_t DtypeSize(uint8_t dtype) {",
        "  switch (dtype) {",
        *(f"    case {d.value}: return {d.itemsize};  // {d.name}" for d in spec.DType),
        "    default: return 0;",
        "  }",
        "}", "",
        "}  // namespace dk", "", "#endif  // DK_SPEC_H_", "",
    ]
    return "\n".join(lines).replace("≤", "<=")  # plain ASCII for every compiler


def _table(head: tuple[str, ...], rows) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def docs_tables() -> str:
    """The Markdown between the GENERATED markers of docs/protocol.md."""
    lines = [BEGIN, "", f"Protocol version: **{spec.PROTOCOL_VERSION}**.", "", "#### Message types", ""]
    lines += _table(("type", "name", "direction", "payload"),
                    ((f"0x{t.value:02x}", t.name, "host → device" if t.from_host else "device → host",
                      spec.MESSAGE_PAYLOADS[t]) for t in spec.MsgType))
    lines += ["#### ERROR codes", ""]
    lines += _table(("code", "name", "detail"), ((e.value, e.name, spec.ERROR_DETAILS[e]) for e in spec.ErrorCode))
    lines += ["#### Tensor dtypes (TfLiteType codes)", ""]
    lines += _table(("code", "name", "bytes"), ((d.value, d.name, d.itemsize) for d in spec.DType))
    lines += ["#### Timer kinds", ""]
    lines += _table(("code", "name", "timer"), ((t.value, t.name, spec.TIMER_NOTES[t]) for t in spec.TimerKind))
    lines += ["#### HELLO capability bits", ""]
    lines += _table(("bit", "name", "meaning"),
                    ((c.value.bit_length() - 1, c.name, spec.CAPABILITY_NOTES[c]) for c in spec.Capability))
    lines += ["#### Sizes (bytes)", ""]
    lines += _table(("name", "bytes", "what"), ((n, v, note) for n, (v, note) in spec.SIZES.items()))
    return "\n".join(lines + [END])


def docs_text(current: str) -> str:
    """docs/protocol.md with its generated section replaced."""
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOCS_PATH} lacks the markers {BEGIN!r} ... {END!r}")
    return current[:start] + docs_tables() + current[end + len(END):]


def outputs() -> dict[Path, str]:
    """Path -> the text it should hold."""
    return {HEADER_PATH: c_header(), DOCS_PATH: docs_text(DOCS_PATH.read_text(encoding="utf-8"))}


def run(argv: list[str]) -> tuple[int, str]:
    """Write the outputs (`--check`: name the stale ones instead); (exit status, text to show)."""
    stale = [p for p, text in outputs().items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        return (1 if stale else 0), "\n".join(f"stale: {path} (run python -m deploykit.protocol.generate)"
                                               for path in stale)
    for path, text in outputs().items():
        path.write_text(text, encoding="utf-8")
    return 0, ""


def main(argv: list[str] | None = None) -> int:
    """The exit status of run(); the script's __main__ below shows its text."""
    return run(sys.argv[1:] if argv is None else argv)[0]


if __name__ == "__main__":
    status, text = run(sys.argv[1:])
    if text:
        print(text)
    sys.exit(status)
