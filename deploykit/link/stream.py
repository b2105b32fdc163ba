"""The streaming engine: records out in INPUT frames within the window, results back, recovery.

Implements "Host recovery" of docs/protocol.md:
- frames carry many small records or parts of a large one; the window (HELLO rx_window)
  bounds the wire bytes of unacknowledged INPUT/BEGIN frames, and frames are about half
  the window so one is on the wire while the device runs the other's records;
- NACK(e) or no ACK progress: go back N (resend from e / from the last ACK);
- records consumed but with no RESULT in time: BEGIN at the first missing record;
- an unsolicited HELLO (reboot) or a vanished port (reopened by the session): BEGIN at
  the first record without a result;
- the first CRC-valid RESULT of a record wins, duplicates are dropped;
- a consumed record whose RESULT is late gets a PING first: the device answers it only
  after the RESULTs of what it consumed before, so slow inferences are waited for and
  only really lost results are run again;
- recoveries without progress in between are bounded; then the run fails clearly.
Flow-control bookkeeping lives in window.py, the adaptive timeouts in timing.py.
"""

from __future__ import annotations

import time

import numpy as np

from deploykit.errors import DeviceError
from deploykit.link.errors import LinkLost
from deploykit.link.samples import SampleFailure, SampleResult
from deploykit.link.timing import Timing, backoff
from deploykit.link.window import Window
from deploykit.protocol import Ack, Begin, Hello, Input, Nack, Ping, Pong, ResultBatch, ResultPart, wire_size
from deploykit.protocol.messages import ErrorCode, ErrorMsg

MIN_FRAME_DATA = 64  # below this, half-window frames cost more in overhead than they save
MIN_CHUNK = 16       # the smallest frame the loss back-off shrinks to
REBOOT_SEQ_GAP = 16  # device frame numbers going back further than this mean a reboot


def frame_data_size(max_payload: int, rx_window: int) -> int:
    """Data bytes per INPUT frame: about half the window, within max_payload."""
    target = rx_window // 2 if rx_window >= 2 * wire_size(4 + MIN_FRAME_DATA) else rx_window
    size = min(max_payload - 4, target)
    while size > 1 and wire_size(4 + size) > target:
        size -= max(1, (wire_size(4 + size) - target) // 2)
    if size < 1:
        raise DeviceError(f"device window {rx_window} B / max_payload {max_payload} B cannot carry an INPUT frame")
    return size


class Streamer:
    """One pass of records through a connected DeviceSession (see DeviceSession.stream)."""

    def __init__(self, session, data: bytes, n: int):
        self.s, self.link, self.faults = session, session.link, session.faults
        self.data, self.n = data, n
        self.done = np.zeros(n, dtype=bool)
        self.sent_at = np.zeros(n)
        self.acked_at = np.full(n, np.inf)
        self.n_done = self.low = 0
        self.out: list = []
        self.acked = self.next_send = 0
        self.strikes = 0   # timeouts in a row without progress
        self.dry = 0       # recoveries since the last new result (bounds a device that ACKs but never answers)
        self.last_ack = time.monotonic()
        self.last_goback = (-1, 0.0)
        self.timing = Timing(session.timeouts, session.record_time)
        self.win = None
        self.dev_seq = None
        self.probe = None  # (PING token, sent time, records consumed when it was sent)
        self._probes = 0
        self._configure(session.hello)
        # slow start: one record, stop-and-wait, until a RESULT tells the inference time (a
        # slow model must not have records queued before the timeouts know about it)
        self.chunk = min(self.max_chunk, self.rec)

    def _configure(self, hello: Hello) -> None:
        self.rec = hello.input_record_bytes
        self.end = self.n * self.rec
        self.window = hello.rx_window
        if getattr(self, "win", None) is None:
            self.win = Window(hello.rx_window)
        self.win.size = hello.rx_window
        self.max_chunk = frame_data_size(hello.max_payload, hello.rx_window)
        self.chunk = min(getattr(self, "chunk", self.max_chunk), self.max_chunk)
        self.timing.configure(self.window, self.s.baud)

    # --- main loop -----------------------------------------------------------------------
    def run(self):
        """Yield lists of SampleResult/SampleFailure, one list per batch that arrived."""
        self.s.barrier()
        self._begin(0)
        while self.n_done < self.n:
            try:
                self._fill()
                for event in self.s.receive():
                    self._handle(event)
                self._check_timeouts()
            except LinkLost:
                self.s.reconnect()
                self._configure(self.s.hello)
                self.dev_seq = None
                self._restart()
            if self.out:
                batch, self.out = self.out, []
                yield batch

    # --- sending -------------------------------------------------------------------------
    def _fill(self) -> None:
        now = time.monotonic()
        budget = self.win.free(now)
        end = self.end if self.timing.known else min(self.end, (self.low + 1) * self.rec)
        while self.next_send < end:
            start = self.next_send
            if start % self.rec == 0 and self.done[start // self.rec]:
                if not self._skip_done(start // self.rec, budget):
                    return
                budget = self.win.free(now)
                continue
            stop = min(start + self.chunk, end, self._next_done_offset(start))
            wire = wire_size(4 + stop - start)
            if wire > budget:
                return
            self.link.send(Input(start, self.data[start:stop]))
            self.win.sent(start, stop, wire, now)
            self.sent_at[start // self.rec: stop // self.rec] = now
            self.next_send, budget = stop, budget - wire

    def _next_done_offset(self, start: int) -> int:
        """Stream offset of the first finished record after `start` within one frame's reach."""
        first = -(-start // self.rec)
        span = self.done[first: first + self.chunk // self.rec + 2]
        hit = int(np.argmax(span)) if span.any() else -1
        return (first + hit) * self.rec if hit >= 0 else self.end

    def _skip_done(self, record: int, budget: int) -> bool:
        """Jump the stream over finished records with a BEGIN; False to wait.

        The BEGIN waits until every frame before it is acknowledged, so a frame lost
        before the jump is still recovered by go-back-N rather than by a result timeout.
        """
        rest = self.done[record:]
        nxt = record + (int(np.argmin(rest)) if not rest.all() else len(rest))
        if nxt >= self.n:
            self.next_send = self.end
            return True
        if self.win.begin is not None or self.win.frames or wire_size(4) > budget:
            return False
        self._begin(nxt)
        return True

    def _begin(self, record: int) -> None:
        """BEGIN at `record`; frames sent before it stay counted until its ACK."""
        now = time.monotonic()
        self._give_up_in_flight(now)
        offset = record * self.rec
        self.win.begun(offset, self.link.send(Begin(record)), now)
        self.probe = None
        self.next_send = offset
        self.acked_at[record:] = np.inf

    def _give_up_in_flight(self, now: float) -> None:
        """Forget the frames in flight, counting their bytes until the device drained them."""
        drain = self.win.pending_bytes() * self.timing.byte_s * 2 + 0.05 + self._compute_s()
        self.win.give_up(now, drain)

    def _go_back(self, offset: int) -> None:
        now = time.monotonic()
        self._count_dry(f"resending from stream offset {offset}")
        self.faults.retries += 1
        self._shrink()
        self._give_up_in_flight(now)
        self.next_send = offset
        self.last_goback = (offset, now)

    def _shrink(self) -> None:
        """Loss: halve the frame size (fewer bytes to lose and resend per frame)."""
        self.chunk = max(min(MIN_CHUNK, self.max_chunk), self.chunk // 2)

    def _grow(self) -> None:
        if self.timing.known:
            self.chunk = min(self.max_chunk, self.chunk + max(8, self.chunk // 4))

    def _resync(self) -> None:
        """BEGIN at the first record without a result (results went missing)."""
        self._count_dry(f"no RESULT for record {self.low}")
        self.faults.resyncs += 1
        self.faults.retries += 1
        self._shrink()
        self._restart()

    def _restart(self) -> None:
        self._advance_low()
        if self.low < self.n:
            self._begin(self.low)

    # --- receiving -----------------------------------------------------------------------
    def _handle(self, event) -> None:
        self._dispatch(self.s.parse(event), event)

    def _dispatch(self, msg, event) -> None:
        """Act on one parsed message (None: a bad frame, already counted)."""
        if msg is not None and self._rebooted(event.seq):
            self._on_boot(msg if isinstance(msg, Hello) else None)
            if isinstance(msg, Hello):
                return
        if isinstance(msg, Ack):
            self._on_ack(msg.next_offset)
        elif isinstance(msg, Nack):
            self._on_nack(msg.expected_offset)
        elif isinstance(msg, ResultBatch):
            self._on_result(msg)
        elif isinstance(msg, ResultPart):
            self._on_result_part(msg)
        elif isinstance(msg, Hello):
            self._on_boot(msg)  # unsolicited: the device rebooted
        elif isinstance(msg, ErrorMsg) and msg.code == ErrorCode.INVOKE_FAILED:
            self._on_failure(msg)
        elif isinstance(msg, Pong):
            self._on_pong(msg)

    def _on_pong(self, msg: Pong) -> None:
        """The answer to a probe: every record consumed before it has had its RESULT sent."""
        if self.probe is None or msg.data != self.probe[0]:
            return
        consumed, self.probe = self.probe[2], None
        self._progress(time.monotonic())  # the device is alive
        self._advance_low()
        if self.low < consumed:
            self._resync()  # its RESULT was lost on the wire

    def _on_ack(self, offset: int) -> None:
        now = time.monotonic()
        if self.win.begin is not None:
            if offset != self.win.begin.start:
                return  # an ACK to a frame sent before the BEGIN
            self.win.begin_acked()
            self.acked = offset
            self._progress(now)
            return
        if offset > self.end:
            return
        if offset < self.acked:  # the device went back (re-processed a BEGIN)
            self.acked = offset
            self._go_back(offset)
            return
        if offset == self.acked:
            return
        self.acked_at[self.acked // self.rec: offset // self.rec] = now
        self.acked, self.last_ack = offset, now
        for frame in self.win.acked(offset):
            if self.strikes == 0:
                self.timing.saw_ack(now - frame.time)
                self._grow()
        self.next_send = max(self.next_send, offset)
        self._progress(now)

    def _on_nack(self, expected: int) -> None:
        if self.win.begin is not None or expected > self.end:
            return
        now = time.monotonic()
        if expected > self.acked:
            self.acked_at[self.acked // self.rec: expected // self.rec] = now
            self.acked = expected
            self._progress(now)
        elif expected < self.acked:
            self.acked = expected
        last_offset, last_time = self.last_goback
        if last_offset == expected and now - last_time < self._ack_timeout():
            return
        self._go_back(expected)

    def _on_result(self, msg: ResultBatch) -> None:
        now = time.monotonic()
        fresh = False
        if not msg.outputs:
            return
        for i, outputs in enumerate(msg.outputs):
            r = msg.first_record + i
            if r >= self.n or self.done[r]:
                continue
            self._finish(r)
            fresh = True
            self.out.append(_result(r, outputs, msg.cycles[i], msg.micros[i], now - self.sent_at[r]))
        if fresh:
            last = min(msg.first_record + len(msg.outputs), self.n) - 1
            clean = np.isfinite(self.acked_at[last]) and self.strikes == 0
            delay = now - self.acked_at[last] if clean else None
            self.s.record_time = self.timing.saw_result(delay, max(msg.micros))
            self.dry = 0
            self._progress(now)

    def _on_result_part(self, msg: ResultPart) -> None:
        """Reassemble an output record sent in RESULT_PARTs; a gap drops the record (resent later)."""
        have = getattr(self, "_parts", None)
        if have is None or have[0] != msg.record or msg.offset != len(have[1]):
            have = self._parts = (msg.record, bytearray()) if msg.offset == 0 else (None, bytearray())
            if msg.offset != 0:
                return
        have[1].extend(msg.data)
        if len(have[1]) >= self.s.hello.output_record_bytes:
            self._parts = None
            self._on_result(ResultBatch(msg.record, (bytes(have[1]),), (msg.cycles,), (msg.micros,)))

    def _on_failure(self, msg: ErrorMsg) -> None:
        r = msg.detail
        if r < self.n and not self.done[r]:
            self._finish(r)
            self.out.append(SampleFailure(r, msg.text or "inference failed on the device"))
            self.dry = 0
            self._progress(time.monotonic())

    def _rebooted(self, seq: int) -> bool:
        """A device frame numbered well below the last one: the device started again.

        Frame numbers count from boot (docs/protocol.md), so this spots a reboot even
        when its HELLO was lost on the wire.
        """
        last, self.dev_seq = self.dev_seq, seq
        return last is not None and seq + REBOOT_SEQ_GAP < last < 0x10000 - REBOOT_SEQ_GAP

    def _on_boot(self, hello: Hello | None) -> None:
        """The device rebooted: check its HELLO (if it arrived), BEGIN at the first missing record."""
        self.faults.resets += 1
        if hello is not None:
            self.s.accept_hello(hello)
            self._configure(hello)
        self.win.reset()
        self.probe = None
        self._restart()

    def _finish(self, r: int) -> None:
        self.done[r] = True
        self.n_done += 1

    def _progress(self, now: float) -> None:
        self.strikes = 0

    def _advance_low(self) -> None:
        while self.low < self.n and self.done[self.low]:
            self.low += 1

    # --- timeouts ------------------------------------------------------------------------
    def _compute_s(self) -> float:
        return self.timing.compute_s(self.chunk // self.rec)

    def _ack_timeout(self) -> float:
        return self.timing.ack(self.chunk // self.rec, self.strikes)

    def _result_timeout(self) -> float:
        return self.timing.result(self.chunk // self.rec, self.strikes)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        if self.win.begin is not None:
            if now - self.win.begin.time > self._ack_timeout() and not self._strike("no ACK to BEGIN"):
                self._begin(self.win.begin.start // self.rec)
                self.faults.retries += 1
            return
        if self.win.frames:
            since = max(self.last_ack, self.win.frames[0].time)
            if now - since > self._ack_timeout():
                if not self._strike(f"no ACK beyond stream offset {self.acked}"):
                    self._go_back(self.acked)
                return
        self._advance_low()
        if self.low >= self.n or self.sent_at[self.low] == 0:
            return
        acked = self.acked_at[self.low]
        if np.isfinite(acked):
            self._check_result(now, acked)
        elif now - self.sent_at[self.low] > self._result_timeout() + self._ack_timeout():
            if not self._strike(f"record {self.low} was sent but never acknowledged"):
                self._resync()

    def _check_result(self, now: float, acked: float) -> None:
        """A consumed record without RESULT: PING, and let the PONG tell whether it was lost.

        The device answers a PING only after the RESULTs of everything it consumed
        before it, so a slow inference is waited for, not recomputed.
        """
        if self.probe is None:
            if now - acked > self._result_timeout():
                self._send_probe(now)
        elif now - self.probe[1] > self._result_timeout():
            if not self._strike(f"no RESULT for record {self.low} and no PONG"):
                self._send_probe(now)

    def _send_probe(self, now: float) -> None:
        self._probes += 1
        token = b"dk-probe" + self._probes.to_bytes(4, "little")
        self.link.send(Ping(token))
        self.probe = (token, now, self.acked // self.rec)

    def _count_dry(self, what: str) -> None:
        """Recoveries that bring no new result are bounded too (4 x max_retries)."""
        self.dry += 1
        if self.dry > 4 * self.s.max_retries:
            self._give_up(what, 4 * self.s.max_retries)

    def _give_up(self, what: str, retries: int) -> None:
        raise DeviceError(
            f"the device on {self.s.url} stopped responding ({what}) and {retries} retries did "
            f"not help; {self.n_done} of {self.n} samples done (faults: {self.faults.as_dict()}); "
            "reset the board and run again to resume")

    def _strike(self, what: str) -> bool:
        """Count a recovery without progress; True when it escalated to a re-handshake.

        Gives up with a DeviceError once max_retries strikes passed without progress.
        """
        self.strikes += 1
        if self.strikes > self.s.max_retries:
            self._give_up(what, self.s.max_retries)
        if self.strikes >= 4 and self.strikes % 2 == 0:
            self.s.handshake(patience=self._compute_s() * backoff(self.strikes), other=self._dispatch)
            self._configure(self.s.hello)
            self.dev_seq = None
            self.win.reset()
            self._restart()
            return True
        return False


def _result(r, outputs, cycles, micros, rtt):
    return SampleResult(r, outputs, int(cycles), int(micros), float(rtt))
