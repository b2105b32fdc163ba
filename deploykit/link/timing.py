"""Adaptive timeouts of the streaming engine, from what the device shows.

Three things set how long to wait: the line (the window's wire time at the baud), the
device's compute (seconds per inference, from RESULT timings, times the records an ACK
or a RESULT can wait behind) and the delays actually seen (decaying maxima, so one stall
does not stretch every later timeout). Timeouts without progress back off exponentially.
"""

from __future__ import annotations

DECAY = 0.7            # per observation: a stall is forgotten within a few frames
FIRST_GUESS_S = 0.005  # seconds per inference assumed until the first RESULT tells
MAX_BACKOFF_STEPS = 4  # timeouts grow at most 2**4 = 16 times


class Timing:
    """Timeouts for one stream; `record_time` carries what an earlier stream learnt."""

    def __init__(self, timeouts, record_time: float | None = None):
        self.floor = timeouts            # DeviceSession.Timeouts: the smallest waits
        self.t_record = record_time or FIRST_GUESS_S
        self.known = record_time is not None
        self.ack_gap = self.result_delay = 0.0
        self.line_s = 0.0

    def configure(self, window: int, baud: int) -> None:
        """The line: a window's worth of bytes, four times, plus scheduling slack."""
        self.byte_s = 10.0 / max(baud, 1)
        self.line_s = 0.03 + 4 * window * self.byte_s

    def saw_ack(self, delay: float) -> None:
        self.ack_gap = max(delay, self.ack_gap * DECAY)

    def saw_result(self, delay: float | None, max_micros: int) -> float:
        """Learn from a RESULT (delay since its records were acknowledged); return s/inference."""
        if delay is not None:
            self.result_delay = max(delay, self.result_delay * DECAY)
        self.t_record = 1.5 * max_micros / 1e6 + 2e-4
        self.known = True
        return self.t_record

    def compute_s(self, records_per_frame: int) -> float:
        """Device time for the records of two frames (an ACK can wait behind them)."""
        return 2 * (records_per_frame + 1) * self.t_record

    def ack(self, records_per_frame: int, strikes: int) -> float:
        base = max(self.floor.ack, self.line_s + self.compute_s(records_per_frame), 2.5 * self.ack_gap)
        return base * backoff(strikes)

    def result(self, records_per_frame: int, strikes: int) -> float:
        base = max(self.floor.result, self.line_s + 2 * self.compute_s(records_per_frame),
                   2.5 * self.result_delay)
        return base * backoff(strikes)


def backoff(strikes: int) -> float:
    return 2.0 ** min(strikes, MAX_BACKOFF_STEPS)
