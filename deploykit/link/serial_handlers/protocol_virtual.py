"""pyserial URL handler for the virtual board: a board in-process, no pty needed.

URL format:  virtual://PATH/TO/manifest.json[?board=ID&baud=N&faults=SPEC&seed=N&pacing=0|1]

- PATH is the manifest (file or its directory); relative to the working directory,
  `virtual:///abs/path` for an absolute one.
- board: a boards/ID.toml id (default "virtual"); baud: a simulated UART at that rate
  (default: the board's link, a USB CDC board at USB speed, a UART board at its baud);
  faults: a spec as for `deploykit virtual-board --faults`, drop/corrupt per byte (commas,
  colons and '=' need no escaping); seed: the fault seed (default 0); pacing=0 turns link
  pacing and simulated inference time off (tests where timing is not the subject).

Registered by `import deploykit.link.ports`, which appends "deploykit.link.serial_handlers" to
serial.protocol_handler_packages. Unlike a pty this port has DTR: a DTR transition from
deasserted to asserted while open reboots the board (banner, state lost, new HELLO).
A disconnect fault makes reads and writes fail as an unplugged USB port does; this port
object, opened again once the board re-enumerated (RECONNECT_DELAY), finds the same board
back (faults already fired stay fired), as a re-plugged cable does; deploykit.link's
FramePort reopens its own port object for that reason. Nothing is kept per process: another
port object, even of the same URL, is another board, and a board goes with its port.

Errors are pyserial's: a bad URL, manifest, board or fault spec is ValueError (bad
parameters), a board that cannot start or is re-enumerating is SerialException;
deploykit.link.ports turns both into one BadInput or DeviceError line naming the port.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

if TYPE_CHECKING:
    from deploykit.virtual_board.link import PacedLink

SCHEME = "virtual://"
VIRTUAL_PORT = "virtual"   # `--port virtual`: the virtual board standing in for --board (url_for)
OPTIONS = ("board", "baud", "faults", "seed", "pacing")
RECONNECT_DELAY = 0.3   # seconds an unplugged board is gone before this port can reopen it


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a virtual:// URL into the manifest path and make_link() keyword arguments.

    A bad URL is ValueError, as pyserial's own handlers raise it (open_port turns it
    into one BadInput line naming the port)."""
    if not url.lower().startswith(SCHEME):
        raise ValueError(f"{url!r} is not a virtual:// URL; write virtual://path/to/manifest.json?board=virtual")
    path, _, query = url[len(SCHEME):].partition("?")
    if not path:
        raise ValueError(f"{url!r} names no manifest; write virtual://path/to/manifest.json")
    try:
        values = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True, strict_parsing=bool(query)).items()}
    except ValueError as exc:
        raise ValueError(f"{url!r} has a malformed query ({exc}); write ?board=ID&baud=N&faults=SPEC&seed=N") from exc
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{url!r}: unknown option {unknown[0]!r}; known options: {', '.join(OPTIONS)}")
    kwargs: dict[str, Any] = {"faults": values.get("faults") or None}
    if "board" in values:
        kwargs["board"] = values["board"]
    for key in ("baud", "seed"):
        if key in values:
            kwargs[key] = _int_option(url, key, values[key])
    if "pacing" in values:
        if values["pacing"] not in ("0", "1"):
            raise ValueError(f"{url!r}: pacing must be 0 or 1, got {values['pacing']!r}")
        kwargs["pacing"] = values["pacing"] == "1"
    return unquote(path), kwargs


def url_for(manifest_path, board: str | None = None) -> str:
    """The virtual:// URL of the virtual board serving `manifest_path` as `board` (`--port virtual`)."""
    from pathlib import Path
    from urllib.parse import quote

    url = SCHEME + quote(str(Path(manifest_path).resolve()))
    return url + (f"?board={quote(board, safe='')}" if board else "")


def _new_board(url: str) -> PacedLink:
    """A powered-on board for `url`; what stops it is pyserial's ValueError or SerialException."""
    from deploykit.errors import BadInput, DeployKitError
    path, kwargs = parse_url(url)
    try:
        from deploykit.virtual_board.device import make_link
        return make_link(path, **kwargs)
    except BadInput as exc:  # the manifest, the board, the fault spec: the URL's parameters
        raise ValueError(str(exc)) from exc
    except DeployKitError as exc:  # e.g. tflite-micro missing: this port cannot open here
        raise SerialException(f"could not open port {url}: {exc}") from exc


def _int_option(url: str, key: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{url!r}: {key} must be a whole number, got {value!r}")
    return int(value)


class Serial(SerialBase):
    """A serial.Serial look-alike whose other end is a virtual board in this process."""

    is_open: bool   # set by SerialBase

    def __init__(self, *args, **kwargs):
        self.link: PacedLink | None = None
        self._buf = bytearray()
        self._gone = False
        self._unplugged: tuple[PacedLink, str, float] | None = None  # (board, url, when it vanished)
        super().__init__(*args, **kwargs)

    # ----- open / close -------------------------------------------------------------
    def open(self):
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        self.link = self._attach(self._port)
        self._gone = False
        self._last_dtr = self._dtr_state
        self.is_open = True
        self.reset_input_buffer()

    @property
    def _board(self) -> PacedLink:
        """The attached board: open() sets it, and every caller checked is_open first."""
        assert self.link is not None
        return self.link

    def _attach(self, url: str) -> PacedLink:
        """This port's unplugged board once it is back, else a new board from the URL."""
        if self._unplugged is not None and self._unplugged[1] == url:
            link, _, since = self._unplugged
            if time.monotonic() - since < RECONNECT_DELAY:
                raise SerialException(errno.ENOENT, f"could not open port {url}: re-enumerating")
            self._unplugged = None
            link.engine.disconnect_requested = False
            link.engine.power_on(link.clock(time.monotonic()))
            return link
        self._unplugged = None
        return _new_board(url)

    def close(self):
        self.is_open = False
        self._buf.clear()
        self.link = None  # a board still plugged in goes with its port; an unplugged one waits in _unplugged
        super().close()

    def _reconfigure_port(self):
        """Line settings do not matter: the simulated baud comes from the URL."""

    # ----- the clock ----------------------------------------------------------------
    def _pump(self, strict: bool = True) -> None:
        """Let the board's time run to now; fail as an unplugged port once it is gone."""
        if not self._gone:
            self._buf += self._board.step(time.monotonic())
            if self._board.engine.disconnect_requested:
                self._unplug()
        if self._gone and strict:
            raise SerialException(errno.EIO, "read failed: virtual board disconnected (re-enumerating)")

    def _unplug(self) -> None:
        self._board.cut()
        self._gone = True
        assert self._port is not None  # an open port has its URL
        self._unplugged = (self._board, self._port, time.monotonic())

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        self._pump()
        return len(self._buf)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        self._pump()
        while len(self._buf) < size:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            due = self._board.next_time()
            wake = min(t for t in (due, deadline, now + 0.05) if t is not None)
            time.sleep(max(wake - now, 0.0002))
            self._pump()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def write(self, data) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        if self._gone:
            raise SerialException(errno.EIO, "write failed: virtual board disconnected (re-enumerating)")
        data = to_bytes(data)
        self._board.host_write(data, time.monotonic())
        self._pump(strict=False)   # bytes written before the board vanished count as sent
        return len(data)

    def reset_input_buffer(self):
        if not self.is_open:
            raise PortNotOpenError()
        self._pump()
        self._buf.clear()

    def reset_output_buffer(self):
        if not self.is_open:
            raise PortNotOpenError()

    @property
    def out_waiting(self) -> int:
        return 0

    # ----- modem lines --------------------------------------------------------------
    def _update_dtr_state(self):
        """DTR deasserted then asserted while open reboots the board, as on a real board."""
        if self.is_open and self._dtr_state and not self._last_dtr:
            self._board.cut()
            self._board.engine.power_on(self._board.clock(time.monotonic()))
        self._last_dtr = self._dtr_state

    def _update_rts_state(self):
        pass

    def _update_break_state(self):
        pass

    @property
    def cts(self):
        return True

    @property
    def dsr(self):
        return True

    @property
    def ri(self):
        return False

    @property
    def cd(self):
        return True
