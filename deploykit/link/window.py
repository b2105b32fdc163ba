"""Flow control: the wire bytes of INPUT and BEGIN frames the device has not acknowledged.

docs/protocol.md: the host never has more than rx_window wire bytes in flight; a frame
stays in flight until an ACK's next_offset reaches its end, a BEGIN until the ACK that
answers it. Frames given up on (go-back-N) may still sit in the device's receive buffer,
so they stay counted as "ghosts" until they must have drained (their estimated arrival
at the device plus slack), or until the device proves it read past them: the ACK of a
later BEGIN, or a NACK (the device NACKs when it reads the first frame after a gap, so
every frame up to that one has been read or lost).

With a device that keeps frames after a gap (HELLO capability SELECTIVE_ACK) a lost
frame is sent again alone (`resent`) and keeps its place; a frame the device has read
but not yet acknowledged (held behind the gap) is `read`: it stays in flight for the
acknowledgement bookkeeping but no longer takes room in the receive window.

FrameSizer picks the INPUT frame size from the frame error rate seen, as ZMODEM shrinks
its blocks on a noisy line and grows them back when it clears.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from deploykit.protocol import wire_size


@dataclass
class Sent:
    start: int     # stream offsets [start, stop)
    stop: int
    wire: int      # bytes on the wire
    time: float    # when it was written
    arrive: float = 0.0   # when its last byte reaches the device, at line rate
    fresh: bool = True    # first time these bytes were sent (Karn: only such frames time the line)
    order: int = 0        # when it was (last) sent, counting frames: the device reads in this order
    read: bool = False    # the device has read it (held after a gap): it no longer fills the window


class Window:
    def __init__(self, size: int, byte_s: float = 0.0):
        self.size = size
        self.byte_s = byte_s                        # wire seconds per byte
        self.frames: deque[Sent] = deque()
        self.ghosts: list[tuple[float, int]] = []  # (expiry, wire)
        self.begin: Sent | None = None              # a BEGIN at stream offset begin.start
        self.line_free = 0.0                        # when the line has carried all we wrote
        self.sent_hi = 0                            # highest stream offset ever sent
        self.count = 0                              # frames sent so far (Sent.order)

    def free(self, now: float) -> int:
        """Wire bytes that may be sent now."""
        self.ghosts = [g for g in self.ghosts if g[0] > now]
        return self.size - self.pending_bytes() - (self.begin.wire if self.begin else 0)

    def arrival(self, wire: int, now: float) -> float:
        """When `wire` bytes written now reach the device, behind what was written before."""
        self.line_free = max(now, self.line_free) + wire * self.byte_s
        return self.line_free

    def sent(self, start: int, stop: int, wire: int, now: float) -> None:
        self.count += 1
        self.frames.append(Sent(start, stop, wire, now, self.arrival(wire, now), start >= self.sent_hi, self.count))
        self.sent_hi = max(self.sent_hi, stop)

    def lost_at(self, offset: int) -> Sent | None:
        """The oldest frame in flight if it holds stream offset `offset` (the frame the device misses)."""
        if self.frames and self.frames[0].start <= offset < self.frames[0].stop:
            return self.frames[0]
        return None

    def resent(self, frame: Sent, wire: int, now: float) -> None:
        """`frame` went out again (selective repeat): it keeps its place, timed from now."""
        self.count += 1
        frame.wire, frame.time, frame.arrive = wire, now, self.arrival(wire, now)
        frame.fresh, frame.order, frame.read = False, self.count, False

    def read_after(self, frame: Sent, now: float) -> None:
        """NACK with selective repeat: the frame after the missing one has been read (held, or lost).

        Only once its bytes can have arrived: a NACK of damaged bytes may come before it.
        """
        if len(self.frames) > 1 and self.frames[0] is frame and self.frames[1].arrive <= now:
            self.frames[1].read = True

    def acked(self, offset: int) -> list[Sent]:
        """Frames an ACK of `offset` completes, oldest first."""
        done = []
        while self.frames and self.frames[0].stop <= offset:
            done.append(self.frames.popleft())
        return done

    def nacked(self, expected: int) -> None:
        """NACK(expected): the frames up to the first one starting after `expected` were read (or lost)."""
        while self.frames and self.frames[0].start <= expected:
            self.frames.popleft()
        if self.frames:
            self.frames.popleft()

    def give_up(self, now: float, slack_s: float, compute_s: float) -> None:
        """Stop tracking the frames in flight; count their bytes until the device has read them.

        That is `slack_s` (host and USB latency) after their last byte reached the device
        at line rate, plus `compute_s` (the device may be busy running records).
        """
        self.ghosts += [(max(f.arrive + slack_s, now) + compute_s, f.wire) for f in self.frames if not f.read]
        self.frames.clear()

    def begun(self, offset: int, wire: int, now: float) -> None:
        self.begin = Sent(offset, offset, wire, now, self.arrival(wire, now))

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
        return sum(f.wire for f in self.frames if not f.read) + sum(w for _, w in self.ghosts)


class FrameSizer:
    """INPUT frame data size from the byte error rate the line shows (decayed counts).

    Every frame sent once ends acknowledged or lost; losses over wire bytes, both decayed
    per frame so the estimate follows a line that gets better or worse, estimate the
    per-byte error rate p. With frames of L = d + h wire bytes (d data, h framing), a
    loss costs k frames: go-back-N about two (the lost one and the one whose NACK
    tells), selective repeat one (`loss_cost`). The wire delivers about
    (d / L) / (1 + kpL): greatest where kpL² − kphL − h = 0, L = (h + sqrt(h² + 4h/(kp))) / 2.
    """

    DECAY = 0.98          # per frame: the estimate forgets within ~50 frames
    PRIOR_FRAMES = 4      # clean frames assumed at the start (one early loss is no trend)

    def __init__(self, max_data: int, min_data: int, loss_cost: int = 2):
        self.max_data, self.min_data = max_data, min(min_data, max_data)
        self.loss_cost = loss_cost  # frames a loss costs: 2 going back N, 1 with selective repeat
        self.head = wire_size(4)  # framing bytes of an INPUT frame (offset, header, CRC, COBS, delimiters)
        self.bytes: float = self.PRIOR_FRAMES * (max_data + self.head)
        self.losses = 0.0

    def outcome(self, wire: int, lost: bool) -> None:
        self.bytes = self.bytes * self.DECAY + wire
        self.losses = self.losses * self.DECAY + (1.0 if lost else 0.0)

    @property
    def byte_error_rate(self) -> float:
        return self.losses / self.bytes if self.bytes else 0.0

    def target(self) -> int:
        """The frame data size that delivers the most at the estimated error rate."""
        p = self.byte_error_rate
        if p <= 0:
            return self.max_data
        h = self.head
        best = (h + math.sqrt(h * h + 4 * h / (self.loss_cost * p))) / 2 - h
        return int(max(self.min_data, min(self.max_data, best)))
