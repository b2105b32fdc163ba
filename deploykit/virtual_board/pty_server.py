"""Serve a virtual board on a pseudo-terminal behind a stable symlink.

The symlink plays the part of /dev/serial/by-id/...: it names the board, not the
/dev/pts entry, so a "disconnect" fault can close the pty and open a new one behind the
same path, the way a board re-enumerates on USB.

Reset from the host. A pty has no modem lines: TIOCMSET/TIOCMBIS fail with ENOTTY, so
pyserial's `port.dtr = ...` raises OSError on it; and `send_break()` (tcsendbreak) is a
silent no-op on Linux ptys (the pty driver has no break_ctl), the master never sees it.
What does reach the master is the slave's termios: so the pty form takes the Arduino
"1200-baud touch" as its DTR: setting the port to 1200 baud reboots the board (boot
banner, state lost, new HELLO). deploykit.link.ports.pulse_reset() sends a DTR pulse and falls
back to the 1200-baud touch where the port has no DTR, so harness code resets a real
port and a virtual one with the same call. The `virtual://` URL form has real DTR.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import tempfile
import termios
import threading
import time
import tty
from pathlib import Path

from deploykit.errors import BadInput

RESET_BAUD = termios.B1200
RECONNECT_DELAY = 0.3     # seconds the port is gone during a disconnect fault
MAX_IDLE_WAIT = 0.01     # also how often the 1200-baud touch is looked for


def _is_pty_link(path: Path) -> bool:
    """A symlink into /dev/pts: one a virtual board left behind (killed), safe to replace."""
    return path.is_symlink() and os.readlink(path).startswith("/dev/pts/")


class PtyServer:
    """Run one PacedLink on a pty in a thread; `path` is the stable symlink to it."""

    def __init__(self, link, path: str | Path | None = None, reconnect_delay: float = RECONNECT_DELAY):
        self.link = link
        self._own_dir = None if path else tempfile.mkdtemp(prefix="deploykit-vb-")
        self.path = Path(path) if path else Path(self._own_dir or "") / f"ttyVIRTUAL-{link.engine.fw.hello.board_id}"
        self.reconnect_delay = reconnect_delay
        self.master = self.slave = -1
        self._pending = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.reconnects = 0

    # ----- pty life cycle ------------------------------------------------------------
    def _open_pty(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self._speed = termios.tcgetattr(self.slave)[4]
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")  # a new name: nothing is overwritten
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)

    def _close_pty(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1
        self._pending.clear()
        if self.path.is_symlink():
            self.path.unlink()

    def start(self) -> str:
        """Open the pty behind the link; refuse a path that is anything but a stale pty link."""
        if os.path.lexists(self.path) and not _is_pty_link(self.path):
            raise BadInput(f"{self.path} already exists and is not a pty link; give --link a new path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_pty()
        except OSError as exc:
            self._close_pty()
            raise BadInput(f"cannot make the port link {self.path}: {exc.strerror or exc}; "
                           "give --link a path in a writable directory") from exc
        self._thread = threading.Thread(target=self._run, name=f"virtual-board {self.path}", daemon=True)
        self._thread.start()
        return str(self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_pty()
        if self._own_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self._own_dir)

    # ----- the loop ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
        except BaseException as exc:  # surfaced by VirtualBoard.stop / the CLI
            self.error = exc

    def _tick(self) -> None:
        now = time.monotonic()
        due = self.link.next_time()
        wait = MAX_IDLE_WAIT if due is None else min(max(due - now, 0.001), MAX_IDLE_WAIT)
        writers = [self.master] if self._pending else []
        readable, _, _ = select.select([self.master], writers, [], wait)
        now = time.monotonic()
        if readable:
            self._read(now)
        self._check_reset_touch(now)
        self._pending += self.link.step(time.monotonic())
        self._write()
        if self.link.engine.disconnect_requested:
            self._disconnect()

    def _read(self, now: float) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN):
                raise
            return
        self.link.host_write(data, now)

    def _write(self) -> None:
        if not self._pending:
            return
        try:
            n = os.write(self.master, self._pending)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise
            return
        del self._pending[:n]

    def _check_reset_touch(self, now: float) -> None:
        speed = termios.tcgetattr(self.slave)[4]
        if speed != self._speed:
            self._speed = speed
            if speed == RESET_BAUD:
                self.link.cut()
                self.link.engine.power_on(self.link.clock(now))

    def _disconnect(self) -> None:
        """Pull the cable: close the pty, wait, come back on a new pty, same symlink."""
        self.link.cut()
        self._close_pty()
        self._stop.wait(self.reconnect_delay)
        self._open_pty()
        self.reconnects += 1
        self.link.engine.disconnect_requested = False
        self.link.engine.power_on(self.link.clock(time.monotonic()))
