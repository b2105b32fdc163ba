"""The virtual board's cost model: cycles of one inference from the manifest's op list
and the board's figures (boards/ID.toml cycles_per_mac, op_overhead_cycles, clock_mhz).

cycles = sum over ops of (macs × cycles_per_mac + count × op_overhead_cycles). A board
with a cycle counter reports microseconds derived from cycles; a `micros` board measures
microseconds and derives cycles from them (docs/protocol.md, RESULT), so the figures are
rounded the way that board's firmware would round them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    cycles: int
    micros: int

    @property
    def seconds(self) -> float:
        return self.micros / 1e6


def inference_timing(ops: list[dict], board) -> Timing:
    """Simulated cycles and microseconds of one inference on `board`."""
    cycles = sum(float(op.get("macs", 0)) * board.cycles_per_mac
                 + int(op.get("count", 1)) * board.op_overhead_cycles for op in ops)
    hz = board.clock_mhz * 1_000_000
    if board.timer == "micros":
        micros = round(cycles * 1e6 / hz)
        return Timing(micros * hz // 1_000_000, micros)
    cycles = round(cycles)
    return Timing(cycles, cycles * 1_000_000 // hz)
