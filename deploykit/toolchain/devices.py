"""Connected boards: serial ports matched to boards/ by USB VID:PID.

pyserial's `list_ports` reads the operating system's device list (sysfs, IOKit, SetupAPI)
without opening any port. A port whose VID:PID appears in a board file is that board; a
VID:PID several boards share (the Nano 33 BLE Sense and its Rev2) names all of them and
`--board` picks. `resolve_target()` is what `--port` means for deploy, flash and hil run.
"""

from __future__ import annotations

from dataclasses import dataclass

from serial.tools import list_ports

from deploykit.errors import BadInput, NoBoardFound
from deploykit.firmware.boards import all_boards


@dataclass(frozen=True)
class Device:
    """One serial port and the boards its USB id matches (none for an unknown device)."""

    port: str
    vid_pid: str | None
    serial_number: str | None
    description: str
    board_ids: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"port": self.port, "board_ids": list(self.board_ids), "vid_pid": self.vid_pid,
                "serial_number": self.serial_number, "description": self.description}


def usb_table() -> dict[tuple[int, int], tuple[str, ...]]:
    """(vid, pid) -> ids of the boards that carry it, from boards/ (virtual has none)."""
    table: dict[tuple[int, int], list[str]] = {}
    for board in all_boards():
        for pair in board.usb_pairs():
            table.setdefault(pair, []).append(board.id)
    return {k: tuple(v) for k, v in table.items()}


def list_devices(known_only: bool = False) -> list[Device]:
    """Every serial port the system lists, with the boards it matches."""
    table = usb_table()
    devices = [_device(info, table) for info in sorted(list_ports.comports(), key=lambda i: i.device)]
    return [d for d in devices if d.board_ids] if known_only else devices


def _device(info, table) -> Device:
    usb = (info.vid, info.pid) if info.vid is not None and info.pid is not None else None
    return Device(port=info.device, vid_pid=f"{usb[0]:04X}:{usb[1]:04X}" if usb else None,
                  serial_number=info.serial_number, description=info.description or "",
                  board_ids=table.get(usb, ()) if usb else ())


def find_board_port(board_id: str | None = None) -> tuple[str, str]:
    """The one connected board's port and id (`--port auto`); NoBoardFound (the rig, exit 3)
    when none is connected, BadInput when several could be meant."""
    matches = [d for d in list_devices(known_only=True) if board_id is None or board_id in d.board_ids]
    wanted = f"a {board_id} board" if board_id else "a known board"
    if not matches:
        raise NoBoardFound(f"no connected serial port matches {wanted} by USB VID:PID; plug it in, "
                       "check `deploykit devices`, or pass --port with a device path")
    if len(matches) > 1:
        listed = ", ".join(f"{d.port} ({'/'.join(d.board_ids)})" for d in matches)
        raise BadInput(f"several ports match {wanted}: {listed}; pass --board and --port to pick one")
    device = matches[0]
    if board_id is None and len(device.board_ids) > 1:
        raise BadInput(f"{device.port} (USB {device.vid_pid}) could be {' or '.join(device.board_ids)}; "
                       "pass --board to say which")
    return device.port, board_id or device.board_ids[0]


def resolve_target(port: str, board_id: str | None = None) -> tuple[str, str | None]:
    """(port, board id) for `--port PORT|auto [--board ID]`, the one rule deploy, flash and hil run use.

    `auto` is the one connected known board (of `board_id`, if given) by USB VID:PID, and
    its id; a device path or pyserial URL is taken as given, with `board_id` as given."""
    if not port:
        raise BadInput("no --port given; pass a serial port, a pyserial URL or `auto`")
    if port != "auto":
        return port, board_id
    return find_board_port(board_id)


def usb_present(board_id: str) -> list[str]:
    """Ports whose USB id belongs to `board_id` right now (re-enumeration polling)."""
    return [d.port for d in list_devices(known_only=True) if board_id in d.board_ids]
