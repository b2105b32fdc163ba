"""Adaptive timeouts of the streaming engine, from the round trips the device shows.

Two delays are measured, each smoothed as TCP does (Jacobson/Karels, RFC 6298: SRTT and
RTTVAR, timeout = SRTT + 4·RTTVAR): the ACK delay (from when an INPUT frame's last byte
reached the device at line rate, as window.py works out from what was written before it,
to its ACK: the ACK's own bytes, the USB stack, the device's queue and compute) and the
RESULT delay (the ACK of a record's last byte to its RESULT: the device's compute).
Measuring from the arrival rather than from the write leaves the line's queueing out of
the variation, so timeouts stay tight while frames wait their turn on the wire. Until a delay has been seen, the
session's Timeouts give the first guess, as RFC 6298's initial RTO does. Karn's rule: a
frame sent again gives no sample (its ACK may answer the first copy). Timeouts without
progress back off exponentially.
"""

from __future__ import annotations

FIRST_GUESS_S = 0.005  # seconds per inference assumed until the first RESULT tells
MAX_BACKOFF_STEPS = 4  # timeouts grow at most 2**4 = 16 times
MIN_WAIT_S = 0.05      # scheduling hiccups of host, device and USB stack: no timeout is shorter
K = 4                  # RFC 6298: RTO = SRTT + K * RTTVAR


class Rtt:
    """Smoothed round trip (SRTT) and its mean deviation (RTTVAR), RFC 6298 section 2."""

    ALPHA, BETA = 1 / 8, 1 / 4

    def __init__(self):
        self.srtt: float | None = None
        self.rttvar = 0.0

    def sample(self, r: float) -> None:
        r = max(r, 0.0)
        if self.srtt is None:
            self.srtt, self.rttvar = r, r / 2
        else:
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - r)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * r

    def timeout(self, initial: float) -> float:
        """SRTT + K·RTTVAR once measured, else `initial`."""
        return initial if self.srtt is None else self.srtt + K * self.rttvar


class StreamTimeouts:
    """Timeouts for one stream; `record_time` carries what an earlier stream learnt."""

    def __init__(self, timeouts, record_time: float | None = None):
        self.first = timeouts            # DeviceSession.Timeouts: the waits before anything is measured
        self.t_record = record_time or FIRST_GUESS_S
        self.known = record_time is not None
        self.ack_rtt = Rtt()
        self.result_rtt = Rtt()
        self.byte_s = 10.0 / 115200

    def configure(self, window: int, baud: int) -> None:
        """The line: seconds per byte (start, 8 data and stop bits) and a window's wire time."""
        self.byte_s = 10.0 / max(baud, 1)
        self.window_s = window * self.byte_s

    def saw_ack(self, delay: float) -> None:
        """A frame sent once reached the device `delay` seconds before its ACK came back."""
        self.ack_rtt.sample(delay)

    def saw_result(self, delay: float | None, max_micros: int) -> float:
        """Learn from a RESULT (delay since its records were acknowledged); return s/inference."""
        if delay is not None:
            self.result_rtt.sample(delay)
        self.t_record = 1.5 * max_micros / 1e6 + 2e-4
        self.known = True
        return self.t_record

    def compute_s(self, records_per_frame: int) -> float:
        """Device time for the records of two frames (an ACK can wait behind them)."""
        return 2 * (records_per_frame + 1) * self.t_record

    def ack(self, records_per_frame: int, strikes: int) -> float:
        """How long the oldest frame in flight may go unacknowledged once its bytes arrived."""
        base = self.ack_rtt.timeout(self.first.ack + self.window_s * 4 + self.compute_s(records_per_frame))
        return max(base, MIN_WAIT_S) * backoff(strikes)

    def result(self, records_per_frame: int, strikes: int) -> float:
        """How long acknowledged records may wait for their RESULT."""
        base = self.result_rtt.timeout(self.first.result + 2 * self.compute_s(records_per_frame))
        return max(base, MIN_WAIT_S + self.compute_s(records_per_frame)) * backoff(strikes)


def backoff(strikes: int) -> float:
    return 2.0 ** min(strikes, MAX_BACKOFF_STEPS)
