"""boards/*.toml: one data file per board, validated on load.

A board file says how to build for a board (PlatformIO platform/board/framework, the
TFLM port as a pinned lib_deps entry), what it has (MCU, clock, RAM, flash, USB ids,
serial receive buffer, timer) and the virtual board's cost model. Code never branches on
a board's name: it reads these fields, and `load_board()` looks ids up in a table.
Unknown keys and missing or mistyped fields are BadInput naming the file and the key.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from deploykit.model.arena import TARGET_CLASSES
from deploykit.errors import BadInput
from deploykit.firmware.resources import data_dir

TIMERS = ("dwt", "ccount", "mcycle", "micros")
ARENA_CLASSES = TARGET_CLASSES  # a board names the arena projection its TFLM port needs
ADAPTERS = ("arduino", "host")
DEBUG_LOGS = ("string", "va_list")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_USB_ID = re.compile(r"^[0-9A-F]{4}:[0-9A-F]{4}$")
_GIT_REF = re.compile(r"#[\w.\-/]+$")
_EXACT_VERSION = re.compile(r"@=?\d+(\.\d+)*([\-+][\w.]+)?$")


@dataclass(frozen=True)
class Board:
    """One board file, checked. Field names are read by render, the virtual board and ports."""

    id: str
    name: str
    platform: str
    board: str                 # "" only for the host adapter (PlatformIO native)
    framework: str             # "" only for the host adapter
    lib_deps: tuple[str, ...]
    tflm_library_note: str
    tflm_header: str           # the port's umbrella header, included by the sketch ("" none)
    debug_log: str             # signature of the port's DebugLog: "string" | "va_list"
    tflm_per_channel_fc: bool  # does the port's FULLY_CONNECTED honour per-channel weight scales?
    adapter: str               # firmware entry template: "arduino" | "host"
    mcu: str
    core: str
    clock_mhz: int
    ram_bytes: int
    flash_bytes: int
    usb_ids: tuple[str, ...]
    baud: int
    rx_buffer_bytes: int
    timer: str
    arena_class: str
    runtime_ram_bytes: int
    runtime_flash_bytes: int
    cycles_per_mac: float
    op_overhead_cycles: int
    build_flags: tuple[str, ...] = ()
    path: Path = field(default=Path(), compare=False)

    @property
    def cpu_hz(self) -> int:
        return self.clock_mhz * 1_000_000

    def usb_pairs(self) -> list[tuple[int, int]]:
        """USB ids as (vid, pid) integers, for matching serial ports."""
        return [tuple(int(part, 16) for part in u.split(":")) for u in self.usb_ids]

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


_OPTIONAL = {"build_flags"}
_TYPES = {
    str: "a string", int: "an integer", float: "a number", tuple: "a list of strings",
    bool: "true or false",
}


def _field_types() -> dict[str, type]:
    hints = {"str": str, "int": int, "float": float, "bool": bool, "tuple[str, ...]": tuple}
    return {f.name: hints[f.type] for f in fields(Board) if f.name != "path"}


def _check_type(path: Path, key: str, value, kind: type):
    """Return `value` converted to the field's type, or raise BadInput naming the key."""
    ok = {
        str: isinstance(value, str),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        tuple: isinstance(value, list) and all(isinstance(v, str) for v in value),
        bool: isinstance(value, bool),
    }[kind]
    if not ok:
        raise BadInput(f"board file {path}: key {key!r} must be {_TYPES[kind]}, got {value!r}")
    return tuple(value) if kind is tuple else kind(value)


def _check_values(path: Path, b: dict) -> None:
    """Checks across fields; each failure names the file and the key."""
    def bad(key, why):
        raise BadInput(f"board file {path}: key {key!r} {why}")

    if not _ID.match(b["id"]):
        bad("id", f"must be lower-case letters, digits and _ (got {b['id']!r})")
    if b["id"] != path.stem:
        bad("id", f"is {b['id']!r} but the file is named {path.name}; make them match")
    choices = {"timer": TIMERS, "arena_class": ARENA_CLASSES, "adapter": ADAPTERS, "debug_log": DEBUG_LOGS}
    for key, allowed in choices.items():
        if b[key] not in allowed:
            bad(key, f"is {b[key]!r}; expected one of {', '.join(allowed)}")
    for key in ("clock_mhz", "ram_bytes", "flash_bytes", "baud", "rx_buffer_bytes", "cycles_per_mac"):
        if b[key] <= 0:
            bad(key, f"must be positive (got {b[key]})")
    for key in ("runtime_ram_bytes", "runtime_flash_bytes", "op_overhead_cycles"):
        if b[key] < 0:
            bad(key, f"must not be negative (got {b[key]})")
    if b["rx_buffer_bytes"] < 64:
        bad("rx_buffer_bytes", "must be at least 64 bytes to carry a protocol frame")
    for usb in b["usb_ids"]:
        if not _USB_ID.match(usb):
            bad("usb_ids", f"entry {usb!r} must be \"VID:PID\" in upper-case hex, e.g. \"2341:805A\"")
    if not b["lib_deps"]:
        bad("lib_deps", "must name the TFLM library (pinned to a version or commit)")
    for dep in b["lib_deps"]:
        if not _pinned(dep):
            bad("lib_deps", f"entry {dep!r} is not pinned; give a repository URL with #commit or tag, "
                            "or owner/name@exact.version")
    if b["adapter"] != "host":
        for key in ("board", "framework"):
            if not b[key]:
                bad(key, "must not be empty for a board built with an Arduino framework")


def _pinned(dep: str) -> bool:
    """A repository with a #ref, or a registry library at one exact version (no ^ ~ > < *)."""
    if "://" in dep or dep.startswith("git@") or dep.endswith(".git"):
        return bool(_GIT_REF.search(dep))
    return bool(_EXACT_VERSION.search(dep))


def parse_board(path: Path) -> Board:
    """Read and validate one board file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"board file {path} cannot be read: {exc}") from exc
    types = _field_types()
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise BadInput(f"board file {path}: unknown key {unknown[0]!r}; known keys: {', '.join(types)}")
    missing = [k for k in types if k not in raw and k not in _OPTIONAL]
    if missing:
        raise BadInput(f"board file {path}: missing key {missing[0]!r}")
    values = {k: _check_type(path, k, v, types[k]) for k, v in raw.items()}
    _check_values(path, values)
    return Board(path=path, **values)


@functools.lru_cache(maxsize=4)
def _table(directory: Path) -> dict[str, Board]:
    boards = [parse_board(p) for p in sorted(directory.glob("*.toml"))]
    return {b.id: b for b in boards}


def board_table(directory: Path | None = None) -> dict[str, Board]:
    """Map board id -> Board for every file in boards/ (cached per directory)."""
    return dict(_table(Path(directory or data_dir("boards")).resolve()))


def all_boards(directory: Path | None = None) -> list[Board]:
    """Every board, sorted by id."""
    table = board_table(directory)
    return [table[k] for k in sorted(table)]


def load_board(board_id: str, directory: Path | None = None) -> Board:
    """The board called `board_id`; BadInput listing the known ids otherwise."""
    table = board_table(directory)
    try:
        return table[board_id]
    except KeyError:
        raise BadInput(f"unknown board {board_id!r}; known boards: {', '.join(sorted(table))} "
                       f"(see `deploykit boards`)") from None
