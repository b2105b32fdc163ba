"""Every frame both ways, for the person debugging a link.

Each frame sent and received is a DEBUG line on the `deploykit.link` logger, and with
`hil run --trace FILE` a timestamped line in FILE (seconds since the trace began, the
direction, the message type, the sequence number and the bytes in hex: the whole frame
as sent, the payload of a frame received, the raw chunk of one that did not decode), as
esptool's `--trace` shows its traffic. The file is a log, written as the frames pass, so
a run that hangs or dies leaves everything up to that moment.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TextIO

from deploykit.errors import BadInput
from deploykit.protocol.framing import Frame
from deploykit.protocol.spec import MsgType

log = logging.getLogger("deploykit.link")


class FrameTrace:
    """The logger and, when a path is given, the trace file of one session's link."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._file: TextIO | None = None
        self._t0: float | None = None

    def open(self, url: str) -> None:
        """Start (the first time) or continue (after a reconnect) the trace file."""
        if self.path is None or self._file is not None:
            return
        first = self._t0 is None
        try:
            # kept open for the whole run, one line per frame; close() ends it
            self._file = file = open(self.path, "w" if first else "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as exc:
            raise BadInput(f"cannot write --trace {self.path}: {exc.strerror or exc}; "
                           "choose a file in a writable folder") from None
        if first:
            self._t0 = time.monotonic()
        file.write(f"# deploykit frame trace: {url} {'opened' if first else 'reopened'} at "
                         f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def sent(self, msg, seq: int, data: bytes) -> None:
        if self._file is not None or log.isEnabledFor(logging.DEBUG):
            self._line("->", f"{type(msg).__name__} seq={seq}", data)

    def received(self, events) -> None:
        if self._file is None and not log.isEnabledFor(logging.DEBUG):
            return
        for event in events:
            if isinstance(event, Frame):
                self._line("<-", f"{_type_name(event.type)} seq={event.seq}", event.payload)
            else:
                self._line("<-", f"bad frame ({event.kind})", event.raw)

    def _line(self, way: str, what: str, data: bytes) -> None:
        log.debug("%s %s %s %d B", way, what, data[:32].hex(), len(data))
        if self._file is not None:
            t = time.monotonic() - (self._t0 or 0.0)
            self._file.write(f"{t:12.6f} {way} {what} {len(data)} B {data.hex()}\n")

    def named_in(self, exc: BaseException) -> BaseException:
        """`exc` with the trace file named at the end of its message (the frames that led to it)."""
        if self.path is not None and exc.args and isinstance(exc.args[0], str) \
                and str(self.path) not in exc.args[0]:
            exc.args = (f"{exc.args[0]}; every frame is in the trace {self.path}",) + exc.args[1:]
        return exc


def _type_name(code: int) -> str:
    try:
        return MsgType(code).name
    except ValueError:
        return f"type 0x{code:02x}"
