"""boards/*.toml: one data file per board, validated on load.

A board file says how to build for a board (PlatformIO platform, pinned as `platform_spec`,
board and framework; the TFLM port as a pinned lib_deps entry), what it has (MCU, clock,
RAM, flash, USB ids, serial link and receive buffer, timer) and the virtual board's cost model.
Code never branches on a board's name: it reads these fields, and `load_board()` looks ids
up in a table. Unknown keys and missing or mistyped fields are BadInput naming the file
and the key.

Boards come from folders searched in order, a later board replacing an earlier one with
the same id: the package's boards/, then ./boards/ of the current folder (unless that is
the package's own), then each folder of $DEPLOYKIT_BOARDS_PATH (an os.pathsep list), then
each `--boards-dir` the command line gave (`add_boards_dirs`). Every board says where it
came from (`source`) and which board it replaced (`overrides`).

A folder may also hold `ID.cost.toml`, the virtual board's cost figures for board ID as
`deploykit calibrate` measured them (harness/calibrate.py writes it): the last one on the
search path is attached to that board (`cost`, `cost_path`) and the cost model
(virtual_board/cost.py) prefers its figures to the table's.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import cast

from deploykit.arena_classes import ARENA_CLASSES  # a board names the arena projection its TFLM port needs
from deploykit.errors import BadInput
from deploykit.firmware.resources import data_dir

# Timer templates (firmware_templates/timers/NAME.h.j2); each names the wire TimerKind it reports.
TIMER_KINDS = {"dwt": "dwt", "ccount": "ccount", "mcycle": "mcycle", "esp_cpu": "mcycle", "micros": "micros"}
TIMERS = tuple(TIMER_KINDS)
PATH_VARIABLE = "DEPLOYKIT_BOARDS_PATH"
BUILT_IN = "built-in"
ADAPTERS = ("arduino", "host")
DEBUG_LOGS = ("string", "va_list")
LINKS = ("usb-cdc", "uart")
KERNEL_FAMILIES = ("reference", "cmsis-nn", "esp-nn")   # the cost model's (virtual_board/cost_table.py)
USB_CDC_BYTES_PER_S = 1_000_000   # USB full speed (12 Mbit/s) carries about 1 MB/s of CDC bulk data
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_USB_ID = re.compile(r"^[0-9A-F]{4}:[0-9A-F]{4}$")
_GIT_REF = re.compile(r"#[\w.\-/]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INI_KEYS = ("platform", "platform_spec", "board", "framework", "lib_deps", "build_flags", "lib_ignore", "tflm_header")
_EXACT_VERSION = re.compile(r"@=?\d+(\.\d+)*([\-+][\w.]+)?$")


@dataclass(frozen=True)
class Board:
    """One board file, checked. Field names are read by render, the virtual board and ports."""

    id: str
    name: str
    platform: str              # PlatformIO platform name, e.g. "ststm32"
    platform_spec: str         # what platformio.ini's `platform =` gets: owner/name@exact or a git URL#ref
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
    link: str                  # the serial port as the board has it: "usb-cdc" | "uart"
    build_flags: tuple[str, ...] = ()
    lib_ignore: tuple[str, ...] = ()   # libraries PlatformIO must never build (platformio.ini lib_ignore)
    link_bytes_per_s: int = 0  # a measured link rate; 0: USB full speed or the baud (see link_rate)
    kernels: str = ""          # TFLM kernel family for the cost model; "": from arena_class
    cost: dict = field(default_factory=dict, compare=False)  # ID.cost.toml's figures ({}: none)
    cost_path: str = field(default="", compare=False)        # the cost file they came from
    path: Path = field(default=Path(), compare=False)
    source: str = field(default=BUILT_IN, compare=False)    # "built-in", or the folder it came from
    overrides: str = field(default="", compare=False)       # the file of the board it replaced, if any

    @property
    def timer_kind(self) -> str:
        """The wire protocol's TimerKind name for this board's timer template."""
        return TIMER_KINDS[self.timer]

    @property
    def link_rate(self) -> tuple[int, str]:
        """(bytes per second, where the figure comes from) of the board's serial link.

        A USB CDC port moves bytes at USB speed whatever the nominal baud: about 1 MB/s at
        full speed unless the board file gives a measured `link_bytes_per_s`. A UART moves
        baud/10 bytes per second (start, 8 data, stop bits)."""
        if self.link_bytes_per_s:
            return self.link_bytes_per_s, "measured (board file)"
        if self.link == "usb-cdc":
            return USB_CDC_BYTES_PER_S, "USB full speed (assumed)"
        return self.baud // 10, f"{self.baud} baud"

    @property
    def cpu_hz(self) -> int:
        return self.clock_mhz * 1_000_000

    def usb_pairs(self) -> list[tuple[int, int]]:
        """USB ids as (vid, pid) integers, for matching serial ports."""
        return [cast("tuple[int, int]", tuple(int(part, 16) for part in u.split(":"))) for u in self.usb_ids]

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


_NOT_IN_FILE = {"path", "source", "overrides", "cost", "cost_path"}
COST_SUFFIX = ".cost.toml"
_OPTIONAL = {"build_flags", "lib_ignore", "link_bytes_per_s", "kernels"}
_TYPES = {
    str: "a string", int: "an integer", float: "a number", tuple: "a list of strings",
    bool: "true or false",
}


def _field_types() -> dict[str, type]:
    hints = {"str": str, "int": int, "float": float, "bool": bool, "tuple[str, ...]": tuple}
    return {f.name: hints[cast(str, f.type)] for f in fields(Board) if f.name not in _NOT_IN_FILE}  # postponed: str


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
    choices = {"timer": TIMERS, "arena_class": ARENA_CLASSES, "adapter": ADAPTERS, "debug_log": DEBUG_LOGS,
               "link": LINKS}
    for key, allowed in choices.items():
        if b[key] not in allowed:
            bad(key, f"is {b[key]!r}; expected one of {', '.join(allowed)}")
    for key in ("clock_mhz", "ram_bytes", "flash_bytes", "baud", "rx_buffer_bytes", "cycles_per_mac"):
        if b[key] <= 0:
            bad(key, f"must be positive (got {b[key]})")
    for key in ("runtime_ram_bytes", "runtime_flash_bytes", "op_overhead_cycles"):
        if b[key] < 0:
            bad(key, f"must not be negative (got {b[key]})")
    if b.get("kernels", "") not in ("", *KERNEL_FAMILIES):
        bad("kernels", f"is {b['kernels']!r}; expected one of {', '.join(KERNEL_FAMILIES)} (or leave it out)")
    if "link_bytes_per_s" in b and b["link_bytes_per_s"] <= 0:
        bad("link_bytes_per_s", f"must be a positive measured rate (got {b['link_bytes_per_s']}); "
                                "leave it out to use USB full speed or the baud")
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
    for key in _INI_KEYS:   # written into platformio.ini as they are: one line each
        value = b.get(key, ())
        for item in (value,) if isinstance(value, str) else value:
            if _CONTROL.search(item):
                bad(key, f"must be one line without control characters (got {item!r})")
    if not _pinned(b["platform_spec"]):
        bad("platform_spec", f"{b['platform_spec']!r} is not pinned; give owner/name@exact.version "
                             "(e.g. platformio/ststm32@17.6.0) or a repository URL with #commit")
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


_extra_dirs: list[Path] = []


def set_boards_dirs(directories) -> None:
    """Search these folders last, a later one winning (the CLI's --boards-dir, set for one
    command and cleared when it ends); replaces the folders set before."""
    paths = [Path(d) for d in directories]
    for path in paths:
        if not path.is_dir():
            raise BadInput(f"boards folder {path} does not exist; give a folder of board .toml files")
    _extra_dirs[:] = paths


def search_path() -> list[tuple[str, Path]]:
    """(source label, folder) pairs in the order they are read; a later board with the same id wins."""
    package = data_dir("boards").resolve()
    found = [(BUILT_IN, package)]
    local = Path.cwd() / "boards"
    if local.is_dir() and local.resolve() != package:
        found.append(("./boards", local))
    for part in os.environ.get(PATH_VARIABLE, "").split(os.pathsep):
        if part:
            if not Path(part).is_dir():
                raise BadInput(f"{PATH_VARIABLE} names {part}, which is not a folder; fix or unset it")
            found.append((PATH_VARIABLE, Path(part)))
    found += [("--boards-dir", p) for p in _extra_dirs]
    return found


def _folder(directory: Path) -> tuple[Board, ...]:
    """The boards of one folder, parsed again only when one of its files changed."""
    files = [p for p in sorted(directory.glob("*.toml")) if not p.name.endswith(COST_SUFFIX)]
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _parse_folder(directory, stamp)


@functools.lru_cache(maxsize=32)
def _parse_folder(directory: Path, stamp: tuple) -> tuple[Board, ...]:
    return tuple(parse_board(directory / name) for name, _, _ in stamp)


def _merged(folders: tuple[tuple[str, Path], ...]) -> dict[str, Board]:
    table: dict[str, Board] = {}
    costs: dict[str, Path] = {}
    for label, directory in folders:
        for board in _folder(directory.resolve()):
            source = BUILT_IN if label == BUILT_IN else f"{label}: {board.path}"
            earlier = table.get(board.id)
            table[board.id] = replace(board, source=source, overrides=str(earlier.path) if earlier else "")
        costs.update((p.name[:-len(COST_SUFFIX)], p) for p in sorted(directory.resolve().glob("*" + COST_SUFFIX)))
    for board_id, path in costs.items():
        if board_id in table:   # a cost file for a board no folder has is not used
            stat = path.stat()
            table[board_id] = replace(table[board_id], cost=_cost_file(path, stat.st_mtime_ns, stat.st_size),
                                      cost_path=str(path))
    return table


@functools.lru_cache(maxsize=32)
def _cost_file(path: Path, mtime: int, size: int) -> dict:
    return parse_cost_file(path)


def parse_cost_file(path: Path) -> dict:
    """Read and check an ID.cost.toml: known sections and names, positive numbers.

    Layout: op_overhead_cycles; [cycles_per_mac.int8|int16|float32] shape = cycles per MAC;
    [per_output] integer|float = cycles per output element; [per_element.integer|float]
    group = cycles per element (shape and group names: virtual_board/cost_table.py)."""
    from deploykit.virtual_board import cost_table as T
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"cost file {path} cannot be read: {exc}") from exc
    shapes = {shape for _, shape in T.MAC_FACTOR} | {"recurrent"}
    layout = {"cycles_per_mac": ({"int8", "int16", "float32"}, shapes),
              "per_output": ({"integer", "float"}, None),
              "per_element": ({"integer", "float"}, set(T.PER_ELEMENT))}

    def bad(key: str, why: str):
        raise BadInput(f"cost file {path}: {key} {why}; fix it or run `deploykit calibrate` again")

    def number(key: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            bad(key, f"must be a number of cycles, 0 or more (got {value!r})")

    for key, value in raw.items():
        if key in ("board", "note", "kernels", "measured"):
            continue
        if key == "op_overhead_cycles":
            number(key, value)
            continue
        if key not in layout or not isinstance(value, dict):
            bad(repr(key), f"is not a cost file key; known: op_overhead_cycles, {', '.join(layout)}")
        kinds, names = layout[key]
        for kind, inner in value.items():
            if kind not in kinds:
                bad(f"[{key}] {kind!r}", f"is not one of {', '.join(sorted(kinds))}")
            if names is None:
                number(f"{key}.{kind}", inner)
                continue
            if not isinstance(inner, dict):
                bad(f"{key}.{kind}", "must be a table of name = cycles")
            for name, v in inner.items():
                if name not in names:
                    bad(f"{key}.{kind}.{name}", f"is not one of {', '.join(sorted(names))}")
                number(f"{key}.{kind}.{name}", v)
    if raw.get("board") is not None and raw["board"] != Path(path).name[:-len(COST_SUFFIX)]:
        bad("board", f"is {raw['board']!r} but the file is named {Path(path).name}; make them match")
    return raw


def board_table(directory: Path | None = None) -> dict[str, Board]:
    """Map board id -> Board: every folder of the search path, or only `directory` if given."""
    if directory is None:
        return _merged(tuple(search_path()))
    given = Path(directory).resolve()
    return _merged(((BUILT_IN if given == data_dir("boards").resolve() else "folder", given),))


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
                       f"(see `deploykit boards`; add your own in ./boards/ or --boards-dir)") from None
