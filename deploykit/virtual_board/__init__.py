"""The virtual board: a device, not a shortcut.

It speaks the firmware's wire protocol (docs/protocol.md) on a pty or as a pyserial
`virtual://` URL, runs the model in TFLM's Python interpreter (real reference kernels),
paces bytes as the board's link does (a UART at its baud, USB CDC at USB speed), holds
answers back by the per-operator cost model's inference time, drops bytes beyond its
receive buffer, reboots on reset, and injects seeded faults.

    with VirtualBoard("build/sine/manifest.json", board="virtual") as port:
        session = open_port(port, 115200)   # any code that takes a port path

Layers: firmware.py (model, HELLO, cost) → engine.py (pure protocol state machine in
simulated time) → link.py (link pacing, wire faults) → pty_server.py (a thread serving a
pty behind a stable symlink) or deploykit/link/serial_handlers/protocol_virtual.py.
"""

from __future__ import annotations

import threading

from deploykit.virtual_board.device import DEFAULT_BOARD, make_link
from deploykit.virtual_board.engine import DeviceEngine
from deploykit.virtual_board.faults import FaultInjector, FaultSpec, parse_faults
from deploykit.virtual_board.firmware import Firmware, build_firmware
from deploykit.virtual_board.link import PacedLink
from deploykit.virtual_board.pty_server import PtyServer

__all__ = ["serve", "DEFAULT_BOARD", "DeviceEngine", "FaultSpec", "FaultInjector", "Firmware", "PacedLink",
           "PtyServer", "VirtualBoard", "build_firmware", "make_link", "parse_faults"]


class VirtualBoard:
    """A virtual board served on a pty; a context manager yielding the stable port path."""

    def __init__(self, manifest, board: str = DEFAULT_BOARD, baud: int | None = None,
                 pacing: bool = True, faults=None, seed: int = 0, path=None,
                 arena_configured: int | None = None):
        self.link = make_link(manifest, board, baud, pacing, faults, seed, arena_configured)
        self.server = PtyServer(self.link, path)
        self.port: str | None = None

    @property
    def engine(self) -> DeviceEngine:
        return self.link.engine

    def start(self) -> str:
        self.port = self.server.start()
        return self.port

    def stop(self) -> None:
        """Stop serving; re-raise what broke the server thread, if anything did."""
        self.server.stop()
        if self.server.error is not None:
            raise self.server.error

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(manifest, on_ready, stop: threading.Event | None = None, **options) -> None:
    """Serve a virtual board until `stop` is set or Ctrl-C; call on_ready(port_path) once up."""
    from deploykit.errors import DeviceError
    stop = stop or threading.Event()
    board = VirtualBoard(manifest, **options)
    with board as port:
        on_ready(port)
        while not stop.wait(0.2):
            if board.server.error is not None:
                raise DeviceError(f"virtual board on {port} stopped: {board.server.error}")
