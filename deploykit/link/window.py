"""Flow control: the wire bytes of INPUT and BEGIN frames the device has not acknowledged.

docs/protocol.md: the host never has more than rx_window wire bytes in flight; a frame
stays in flight until an ACK's next_offset reaches its end, a BEGIN until the ACK that
answers it. Frames given up on (go-back-N) may still sit in the device's receive buffer,
so they stay counted as "ghosts" until they must have drained, or until the ACK of a
later BEGIN proves the device read past them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Sent:
    start: int   # stream offsets [start, stop)
    stop: int
    wire: int    # bytes on the wire
    time: float  # when it was written


class Window:
    def __init__(self, size: int):
        self.size = size
        self.frames: deque[Sent] = deque()
        self.ghosts: list[tuple[float, int]] = []  # (expiry, wire)
        self.begin: Sent | None = None              # a BEGIN at stream offset begin.start

    def free(self, now: float) -> int:
        """Wire bytes that may be sent now."""
        self.ghosts = [g for g in self.ghosts if g[0] > now]
        used = sum(f.wire for f in self.frames) + sum(w for _, w in self.ghosts)
        return self.size - used - (self.begin.wire if self.begin else 0)

    def sent(self, start: int, stop: int, wire: int, now: float) -> None:
        self.frames.append(Sent(start, stop, wire, now))

    def acked(self, offset: int) -> list[Sent]:
        """Frames an ACK of `offset` completes, oldest first."""
        done = []
        while self.frames and self.frames[0].stop <= offset:
            done.append(self.frames.popleft())
        return done

    def give_up(self, now: float, drain_s: float) -> None:
        """Stop tracking the frames in flight; keep their bytes counted for `drain_s`."""
        expiry = now + drain_s
        self.ghosts += [(expiry, f.wire) for f in self.frames]
        self.frames.clear()

    def begun(self, offset: int, wire: int, now: float) -> None:
        self.begin = Sent(offset, offset, wire, now)

    def begin_acked(self) -> None:
        """The device answered the BEGIN: everything sent before it has been read."""
        self.begin = None
        self.ghosts.clear()

    def reset(self) -> None:
        """The device rebooted or was reopened: its buffer is empty."""
        self.frames.clear()
        self.ghosts.clear()
        self.begin = None

    def pending_bytes(self) -> int:
        return sum(f.wire for f in self.frames) + sum(w for _, w in self.ghosts)
