"""Flash a built project and prove the board runs it.

Upload goes through deploykit/toolchain/pio.py. Many boards drop off the bus after an upload: the
Nano 33 BLE family re-enumerates (sometimes under a new /dev/ttyACM name), an RP2040
reboots from its UF2 drive back into a serial port. So after the upload we wait, bounded,
for a port with the board's USB VID:PID (or the same device path) to come back, then
open a DeviceSession: the handshake checks the model sha256 against the manifest, so a
board that kept its old firmware is caught here rather than in the HIL run.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import BadInput, DeviceError
from deploykit.firmware.boards import Board, load_board
from deploykit.toolchain import devices, pio

WAIT_S = 20.0      # how long a board may take to come back after an upload
POLL_S = 0.1
_INI_SHA = re.compile(r"Model sha256 ([0-9a-f]{64})")


@dataclass(frozen=True)
class FlashResult:
    """Where the board came back and what it said in its HELLO."""

    env: str
    board_id: str
    port: str
    log: Path
    waited_s: float
    hello: dict

    def to_dict(self) -> dict:
        return {"env": self.env, "board_id": self.board_id, "port": self.port, "log": str(self.log),
                "waited_s": round(self.waited_s, 2), "hello": self.hello}


def flash(project_dir, port: str = "auto", board_id: str | None = None, manifest=None,
          on_line=None, wait_s: float = WAIT_S) -> FlashResult:
    """Upload DIR's firmware to the board on `port` ("auto": find it by VID:PID) and verify it."""
    if not wait_s > 0:
        raise BadInput(f"--wait {wait_s} must be a positive number of seconds (the board needs time to come back)")
    project_dir = Path(project_dir)
    env = pio.choose_env(project_dir, board_id)
    board = load_board(env)
    sha = expected_sha256(project_dir, manifest)
    url, by_usb = resolve_port(port, board)
    check_port(url, board.baud)
    run = pio.upload(project_dir, env, url, project_dir / "upload.log", on_line)
    started = time.monotonic()
    hello = handshake_when_back(board, url, by_usb, sha, wait_s)
    return FlashResult(env, board.id, hello["port"], run.log, time.monotonic() - started, hello)


def expected_sha256(project_dir: Path, manifest=None) -> str:
    """The model hash the flashed board must report: the manifest's, else the rendered one."""
    if manifest is not None:
        from deploykit.model.manifest import load

        return load(manifest).sha256
    found = _INI_SHA.search((project_dir / "platformio.ini").read_text(encoding="utf-8"))
    if not found:
        raise BadInput(f"{project_dir}/platformio.ini names no model sha256 (not rendered by deploykit?); "
                       "pass --manifest so the flashed model can be checked")
    return found.group(1)


def resolve_port(port: str, board: Board) -> tuple[str, bool]:
    """(url, found by USB id?) for `--port URL|auto`."""
    url, _ = devices.resolve_target(port, board.id)
    return url, port == "auto" or ("://" not in url and url in devices.usb_present(board.id))


def check_port(url: str, baud: int) -> None:
    """Open and close a device path before uploading, so busy/permission/missing are named.

    Network and virtual URLs are left to the uploader."""
    if "://" in url:
        return
    from deploykit.link.ports import open_port

    open_port(url, baud, timeout=0.1).close()


def handshake_when_back(board: Board, url: str, by_usb: bool, sha: str, wait_s: float) -> dict:
    """Wait for the board to re-appear after the upload, then handshake and check the hash."""
    from deploykit.link.identity import IdentityMismatch
    from deploykit.link.session import DeviceSession

    deadline = time.monotonic() + wait_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        current = _current_port(board, url, by_usb)
        if current is not None:
            try:
                with DeviceSession(current, board.baud, expected_sha256=sha) as session:
                    return _hello_summary(session.hello, current)
            except IdentityMismatch:  # another model, or firmware of another protocol version
                raise
            except (DeviceError, BadInput, OSError) as exc:
                last = exc
        time.sleep(POLL_S)
    raise DeviceError(f"the {board.id} did not come back after the upload within {wait_s:.0f} s "
                      f"(waited for {'USB ' + '/'.join(board.usb_ids) if by_usb else url}; last: {last}); "
                      "press reset, check `deploykit devices`, then run `deploykit flash` again")


def _current_port(board: Board, url: str, by_usb: bool) -> str | None:
    """The board's port now: the same path, or the one port with its VID:PID."""
    if "://" in url:
        return url
    if not by_usb:
        return url if os.path.exists(url) else None
    present = devices.usb_present(board.id)
    if url in present:
        return url
    return present[0] if len(present) == 1 else None


def _hello_summary(hello, port: str) -> dict:
    return {"port": port, "board_id": hello.board_id, "model_sha256": hello.model_sha256.hex(),
            "arena_configured": hello.arena_configured, "arena_used": hello.arena_used,
            "cpu_hz": hello.cpu_hz, "simulated": bool(hello.simulated)}
