"""Assemble a virtual board from a manifest and a board id: firmware, engine, link.

Shared by the pty server, the `virtual://` URL handler and the benchmark, so all three
behave the same.
"""

from __future__ import annotations

from pathlib import Path

from deploykit.virtual_board.engine import DeviceEngine
from deploykit.virtual_board.faults import FaultInjector
from deploykit.virtual_board.firmware import build_firmware
from deploykit.virtual_board.link import PacedLink

DEFAULT_BOARD = "virtual"


def load_manifest(manifest):
    """A Manifest object as is; a path (file or directory) loaded and verified."""
    if hasattr(manifest, "data") and hasattr(manifest, "model_path"):
        return manifest
    from deploykit.model.manifest import load
    return load(Path(manifest))


def make_link(manifest, board: str = DEFAULT_BOARD, baud: int | None = None, pacing: bool = True,
              faults=None, seed: int = 0, arena_configured: int | None = None) -> PacedLink:
    """A powered-on virtual board behind its wire, ready for `PacedLink.step(now)`.

    The wire is paced as the board file's `link` says: a USB CDC board at USB speed (or its
    measured `link_bytes_per_s`), a UART board at its baud; `baud` forces a UART at that rate."""
    from deploykit import extras
    from deploykit.firmware.boards import load_board
    extras.require("tflite_micro", "the virtual board")
    fault_state = faults if isinstance(faults, FaultInjector) else FaultInjector(faults, seed)
    board_obj = load_board(board) if isinstance(board, str) else board
    if baud is not None and int(baud) <= 0:
        from deploykit.errors import BadInput
        raise BadInput(f"baud rate {baud} must be a positive number of bits per second, e.g. 115200")
    firmware = build_firmware(load_manifest(manifest), board_obj, arena_configured)
    engine = DeviceEngine(firmware, fault_state, timed=pacing)
    if baud is not None:   # an explicit line rate: a UART at that baud, whatever the board has
        return PacedLink(engine, int(baud), paced=pacing)
    rate, _ = board_obj.link_rate
    return PacedLink(engine, board_obj.baud, paced=pacing, bytes_per_s=rate, kind=board_obj.link)
