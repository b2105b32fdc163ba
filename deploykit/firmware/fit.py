"""Does a model fit a board? The one check render, deploy and the virtual board all make.

A board's firmware carries a model when TFLM has its ops, the port computes its
per-channel FULLY_CONNECTED weights (if any), its frames can carry the protocol (records
of any size cross frames: INPUT is a byte stream, large outputs go as RESULT_PARTs), and
RAM and flash hold what the firmware needs. Each refusal names the model, the limit and
both numbers, so a virtual run never passes a model no firmware of that board can carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deploykit.errors import BadInput
from deploykit.model.arena import with_margin  # the one home of the arena margin
from deploykit.protocol.framing import max_payload_for_window
from deploykit.protocol.messages import results_chunked
from deploykit.protocol.spec import RESULT_PART_HEAD, DType

PROTOCOL_RAM_SLACK = 512


@dataclass(frozen=True)
class Fit:
    """One model against one board: what it needs and what the board has, in bytes."""

    board_id: str
    arena: int
    protocol_ram: int
    ram_budget: int      # the board's RAM less its runtime estimate
    flash_need: int      # model bytes
    flash_budget: int    # the board's flash less its runtime estimate

    @property
    def ram_need(self) -> int:
        return self.arena + self.protocol_ram

    @property
    def fits(self) -> bool:
        return self.ram_need <= self.ram_budget and self.flash_need <= self.flash_budget

    def problems(self, board) -> list[str]:
        """Each exceeded limit, with both numbers."""
        out = []
        if self.ram_need > self.ram_budget:
            out.append(f"needs {self.arena:,} B of arena + {self.protocol_ram:,} B of protocol buffers; "
                       f"{self.board_id} has {board.ram_bytes:,} B of RAM less {board.runtime_ram_bytes:,} B "
                       f"for its runtime ({self.ram_budget:,} B): does not fit")
        if self.flash_need > self.flash_budget:
            out.append(f"needs {self.flash_need:,} B of flash for the model; {self.board_id} has "
                       f"{board.flash_bytes:,} B of flash less {board.runtime_flash_bytes:,} B for its "
                       f"runtime ({self.flash_budget:,} B): does not fit")
        return out


def record_bytes(specs) -> int:
    """Bytes of one record of these manifest tensor specs (all tensors back to back)."""
    return sum(math.prod(int(d) for d in s["shape"]) * DType[s["dtype"]].itemsize for s in specs)


def max_payload(board) -> int:
    """The frame payload the board's firmware is built with (DK_MAX_PAYLOAD)."""
    return max_payload_for_window(board.rx_buffer_bytes)


def protocol_ram(board, in_record: int, out_record: int) -> int:
    """RAM of the protocol core: the input record, frame buffers, and a large output record."""
    payload = max_payload(board)
    big_out = out_record if results_chunked(out_record, payload) else 0
    return in_record + big_out + 3 * payload + PROTOCOL_RAM_SLACK


def measure(manifest, board, model_len: int, arena: int) -> Fit:
    """The figures of `manifest` (model of `model_len` bytes, `arena` bytes) on `board`."""
    in_record, out_record = record_bytes(manifest["inputs"]), record_bytes(manifest["outputs"])
    return Fit(board.id, int(arena), protocol_ram(board, in_record, out_record),
               board.ram_bytes - board.runtime_ram_bytes, int(model_len),
               board.flash_bytes - board.runtime_flash_bytes)


def check_frames(board, name: str) -> None:
    """The board's frames must carry an INPUT byte and a RESULT_PART byte."""
    payload = max_payload(board)
    if payload <= RESULT_PART_HEAD:
        raise BadInput(f"board {board.id}'s {board.rx_buffer_bytes}-byte receive buffer gives frames of "
                       f"{payload} B of payload, which cannot carry model {name!r}'s results "
                       f"(a RESULT_PART needs more than {RESULT_PART_HEAD}); raise rx_buffer_bytes")


def check(manifest, board, model: bytes, arena: int, name: str | None = None) -> Fit:
    """Refuse (BadInput, both numbers) a model the board's firmware cannot carry; else its Fit."""
    from deploykit.firmware.render import check_per_channel_dense, resolver_ops
    name = name or str(manifest["name"])
    resolver_ops(manifest)
    check_per_channel_dense(model, board, name)
    check_frames(board, name)
    fit = measure(manifest, board, len(model), arena)
    problems = fit.problems(board)
    if problems:
        others = fits_on(manifest, len(model), arena, exclude=board.id)
        where = f"with this arena it fits {', '.join(others)}" if others else "it fits no shipped board"
        raise BadInput(f"model {name!r} {'; and '.join(problems)}; {where} (`deploykit inspect` "
                       f"prints the fit table); choose a bigger board or a smaller model")
    return fit


def fits_on(manifest, model_len: int, arena: int, exclude: str = "") -> list[str]:
    """Ids of the shipped boards whose RAM and flash hold the model with this arena."""
    from deploykit.firmware.boards import all_boards
    return [b.id for b in all_boards() if b.id != exclude and measure(manifest, b, model_len, arena).fits]


def board_arena(projected: dict, measured: dict, board, margin_pct=10.0) -> int | None:
    """The arena render gives `board` by default: its class's projection (the host's measured
    figures too, for a host build) plus the margin; None without a projection for its class."""
    if board.arena_class not in projected:
        return None
    base = int(projected[board.arena_class])
    if board.adapter == "host":
        base = max(base, int(measured.get("host_recorded") or 0), int(measured.get("host_min") or 0))
    return with_margin(base, margin_pct)


def table(report: dict, boards) -> list[dict]:
    """Per board, for `deploykit inspect`: arena need vs RAM budget, model vs flash budget."""
    rows = []
    tensors = {"inputs": report["inputs"], "outputs": report["outputs"]}
    for board in boards:
        arena = board_arena(report["arena"]["projected"], report["arena"]["measured"], board)
        if arena is None:
            continue
        f = measure(tensors, board, report["size"], arena)
        rows.append({"board": board.id, "arena": f.arena, "protocol_ram": f.protocol_ram,
                     "ram_need": f.ram_need, "ram_budget": f.ram_budget, "flash_need": f.flash_need,
                     "flash_budget": f.flash_budget, "fits": f.fits})
    return rows


def check_any(rows: list[dict], name: str) -> None:
    """Refuse, in one line, a model that fits none of the boards: its smallest need, the largest board."""
    if not rows or any(r["fits"] for r in rows):
        return
    small = min(rows, key=lambda r: r["ram_need"])
    big = max(rows, key=lambda r: (r["ram_budget"], r["flash_budget"]))
    raise BadInput(f"model {name!r} fits no board: its smallest need is {small['ram_need']:,} B of RAM "
                   f"({small['arena']:,} B arena on {small['board']}) and {small['flash_need']:,} B of flash; "
                   f"the largest board, {big['board']}, has {big['ram_budget']:,} B of RAM and "
                   f"{big['flash_budget']:,} B of flash after its runtime; make the model smaller")


FIT_HEADER = ("BOARD", "RAM NEED", "RAM BUDGET", "FLASH NEED", "FLASH BUDGET", "FIT")


def table_lines(rows: list[dict]) -> list[tuple[str, ...]]:
    """The fit table's rows for commands.text_table, under FIT_HEADER."""
    return [(r["board"], f"{r['ram_need']:,}", f"{r['ram_budget']:,}", f"{r['flash_need']:,}",
             f"{r['flash_budget']:,}", "fits" if r["fits"] else "does not fit") for r in rows]
