"""The streaming engine: records out in INPUT frames within the window, results back, recovery.

Implements "Host recovery" of docs/protocol.md:
- frames carry many small records or parts of a large one; the window (HELLO rx_window)
  bounds the wire bytes of unacknowledged INPUT/BEGIN frames, and frames are about half
  the window so one is on the wire while the device runs the other's records;
- NACK(e) or no ACK progress: with a device that keeps frames after a gap (HELLO
  capability SELECTIVE_ACK) send again only the frame that starts at e (at the last
  ACK), and likewise a frame sent before one the device has acknowledged past it (it was
  read and not kept); with any other device go back N (resend from e / the last ACK);
- records consumed but with no RESULT in time: BEGIN at the first missing record; a
  RESULT after a record without one (since the last BEGIN) tells that record's answer
  was lost at once (the device answers in order): BEGIN there once the frames in flight
  are answered (_check_skipped, _redo_when_drained);
- an unsolicited HELLO (reboot) or a vanished port (reopened by the session): BEGIN at
  the first record without a result;
- the first CRC-valid RESULT of a record wins, duplicates are dropped;
- a consumed record whose RESULT is late gets a PING first: the device answers it only
  after the RESULTs of what it consumed before, so slow inferences are waited for and
  only really lost results are run again;
- a RESULT is kept only when every record it names was sent in full since the last
  BEGIN (a record's `sent_at` is cleared by a BEGIN): anything else is a stale or forged
  answer, dropped and counted (faults.rejected_results); a kept RESULT also acknowledges
  its records, so a lost ACK costs nothing;
- recoveries without progress in between are bounded; then the run fails clearly, naming
  the likely cause from what was seen (line errors, a silent device, wrong firmware).
Flow-control bookkeeping and the frame size (from the frame error rate) live in
window.py, the round-trip-based timeouts in timing.py.
"""

from __future__ import annotations

import time

import numpy as np

from deploykit.errors import DeviceError
from deploykit.link.errors import LinkLost
from deploykit.link.samples import SampleFailure, SampleResult
from deploykit.link.session import _looks_like_text
from deploykit.link.timing import StreamTimeouts, backoff
from deploykit.link.window import FrameSizer, Window
from deploykit.protocol import (
    Ack,
    Begin,
    FrameError,
    Hello,
    Input,
    Nack,
    Ping,
    Pong,
    ResultBatch,
    ResultPart,
    wire_size,
)
from deploykit.protocol.messages import ErrorCode, ErrorMsg
from deploykit.protocol.spec import Capability

MIN_FRAME_DATA = 64  # below this, half-window frames cost more in overhead than they save
MIN_CHUNK = 16       # the smallest frame a noisy line shrinks frames to
SILENT_S = 1.0       # no frame at all for this long when giving up: the device went silent
DRAIN_SLACK_S = 0.01  # frames given up on have been read this long after their bytes arrived (or overflow: a loss)
NOISY_S = 2.0        # a damaged frame this recently: the line is noisy, timeouts need not back off
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
        self.sent_at = np.zeros(n)        # when a record's last byte was written since the last BEGIN (0: not yet)
        self.arrived_at = np.zeros(n)     # when that byte reached the device, at line rate
        self.acked_at = np.full(n, np.inf)
        self.n_done = self.low = 0
        self.out: list = []
        self.acked = self.next_send = 0
        self.strikes = 0   # timeouts in a row without progress
        self.dry = 0       # recoveries since the last new result (bounds a device that ACKs but never answers)
        self.last_ack = time.monotonic()
        self.last_goback = (-1, 0.0)
        self.timing = StreamTimeouts(session.timeouts, session.record_time)
        self.win: Window  # set by _configure below
        self.dev_seq: int | None = None   # seq of the last device frame that parsed
        self.begun: tuple[int, int | None] = (0, None)  # (record, seq of the ACK) of the last BEGIN answered
        self.redo: float | None = None    # since when a lost RESULT waits for the frames in flight
        # (PING token, when it reaches the device, records consumed when it was sent)
        self.probe: tuple[bytes, float, int] | None = None
        self._probes = 0
        self.heard = time.monotonic()  # when the device last sent a frame that parsed
        self.damaged_at = -NOISY_S     # when a damaged frame last arrived
        self.heard_any = self.heard    # when anything at all (a frame, damaged bytes, text) last arrived
        self.quiet_strikes = 0         # timeouts in a row during which nothing at all arrived
        self.last_strike = self.heard
        self.sizer: FrameSizer  # set by _configure below
        self.check_resend = False      # the next frame sent is a resend: PING behind it (noisy line)
        self.resend_probe: tuple[bytes, int] | None = None  # (PING token, end of the frame sent again)
        # (stop, arrival, earliest ACK of its copy) of a frame given up on a timeout
        self.timed_out: tuple[int, float, float] | None = None
        self._configure(session.hello)
        # slow start: one record, stop-and-wait, until a RESULT tells the inference time (a
        # slow model must not have records queued before the timeouts know about it)
        self.chunk = min(self.max_chunk, self.rec)

    def _configure(self, hello: Hello) -> None:
        self.rec = hello.input_record_bytes
        self.end = self.n * self.rec
        self.window = hello.rx_window
        self.selective = bool(hello.capabilities & Capability.SELECTIVE_ACK)
        self.timing.configure(self.window, self.s.baud)
        if getattr(self, "win", None) is None:
            self.win = Window(hello.rx_window, self.timing.byte_s)
        self.win.size = hello.rx_window
        self.max_chunk = frame_data_size(hello.max_payload, hello.rx_window)
        if getattr(self, "sizer", None) is None or self.sizer.max_data != self.max_chunk:
            self.sizer = FrameSizer(self.max_chunk, MIN_CHUNK)
        self.sizer.loss_cost = 1 if self.selective else 2
        self.chunk = min(getattr(self, "chunk", self.max_chunk), self.max_chunk)

    # --- main loop -----------------------------------------------------------------------
    def run(self):
        """Yield lists of SampleResult/SampleFailure, one list per batch that arrived."""
        self._barrier()
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

    def _barrier(self) -> None:
        """PING before the stream; its round trip is the first guess of the ACK delay."""
        start, retries = time.monotonic(), self.faults.retries
        self.s.barrier(timeout=self._ack_timeout())  # a lost PING costs an ACK timeout, not half a second
        if self.faults.retries == retries:
            self.timing.saw_ack(time.monotonic() - start)

    # --- sending -------------------------------------------------------------------------
    def _fill(self) -> None:
        now = time.monotonic()
        if self.redo is not None and self.next_send % self.rec == 0 and not self._redo_when_drained(now):
            return
        budget = self.win.free(now)
        end = self.end if self.timing.known else min(self.end, (self.low + 1) * self.rec)
        if self.redo is not None:  # finish the record being sent (else it is sent again), then drain
            end = min(end, -(-self.next_send // self.rec) * self.rec)
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
            self._sent_records(start, stop, now, self.win.frames[-1].arrive)
            self.next_send, budget = stop, budget - wire
            if self.check_resend:
                self._probe_resend(stop, now)

    def _sent_records(self, start: int, stop: int, now: float, arrive: float) -> None:
        """Records whose last byte went out in the frame [start, stop): when, and when it arrives."""
        self.sent_at[start // self.rec: stop // self.rec] = now
        self.arrived_at[start // self.rec: stop // self.rec] = arrive

    def _resend_lost(self, offset: int, after_nack: bool = False) -> bool:
        """Selective repeat: send again only the frame in flight holding `offset`; False to go back N.

        After a NACK the frame behind the missing one has been read (the device keeps it
        when it can), so it stops filling the window. A frame the device did not keep shows
        up later: an ACK that stops at its start (see _on_ack).
        """
        frame = self.win.lost_at(offset) if self.selective and self.win.begin is None else None
        if frame is None:
            return False
        now = time.monotonic()
        self._count_dry(f"resending stream offset {offset}")
        self.faults.retries += 1
        self.sizer.outcome(frame.wire, lost=True)
        self._shrink()
        if after_nack:
            self.win.read_after(frame, now)
        wire = self.link.send(Input(frame.start, self.data[frame.start:frame.stop]))
        self.win.resent(frame, wire, now)
        self._sent_records(frame.start, frame.stop, now, frame.arrive)
        self.last_goback = (offset, now)
        return True

    def _recover(self, offset: int, after_nack: bool = False) -> None:
        """The device misses stream offset `offset`: send that frame again, else go back N."""
        if not self._resend_lost(offset, after_nack):
            if after_nack:
                self.win.nacked(offset)
            self._go_back(offset)

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
        self.probe = self.redo = None
        self.next_send = offset
        self.acked_at[record:] = np.inf
        self.sent_at[record:] = 0  # nothing from here on is sent since this BEGIN

    def _give_up_in_flight(self, now: float) -> None:
        """Forget the frames in flight, counting their bytes until the device drained them."""
        self.win.give_up(now, DRAIN_SLACK_S, self._compute_s())

    def _go_back(self, offset: int) -> None:
        now = time.monotonic()
        self._count_dry(f"resending from stream offset {offset}")
        self.faults.retries += 1
        if self.win.frames:  # the oldest frame in flight was lost (or its ACK was)
            self.sizer.outcome(self.win.frames[0].wire, lost=True)
        self._shrink()
        self._give_up_in_flight(now)
        self.next_send = offset
        self.last_goback = (offset, now)
        self.check_resend, self.resend_probe = True, None

    def _shrink(self) -> None:
        """A loss: frames no larger than the size the error rate seen so far calls for."""
        self.chunk = min(self.chunk, self.sizer.target())

    def _grow(self) -> None:
        """A frame got through: grow towards the size the error rate calls for."""
        if self.timing.known:
            self.chunk = min(self.sizer.target(), self.chunk + max(8, self.chunk // 4))

    def _resync(self) -> None:
        """BEGIN at the first record without a result (results went missing)."""
        self._count_dry(f"no RESULT for record {self.low}")
        self.faults.resyncs += 1
        self.faults.retries += 1
        self._restart()

    def _restart(self) -> None:
        self._advance_low()
        if self.low < self.n:
            self._begin(self.low)

    # --- receiving -----------------------------------------------------------------------
    def _handle(self, event) -> None:
        msg = self.s.parse(event)
        self.heard_any = time.monotonic()
        if msg is not None:
            self.heard = self.heard_any
        elif _damaged(event):
            self.damaged_at = time.monotonic()
        self._dispatch(msg, event)

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

    def _probe_resend(self, stop: int, now: float) -> None:
        """PING right behind the first frame sent again on a noisy line (going back N).

        The device NACKs a gap once per offset, so a resent frame lost again would be
        noticed only by a timeout; the PONG, answered after the frame was read, tells at
        once whether its ACK came (and costs ~25 bytes).
        """
        self.check_resend = False
        if not self._noisy():
            return
        self._probes += 1
        token = b"dk-resend" + self._probes.to_bytes(4, "little")
        self.link.send(Ping(token))
        self.resend_probe = (token, stop)

    def _on_pong(self, msg: Pong) -> None:
        """The answer to a probe: every record consumed before it has had its RESULT sent."""
        if self.resend_probe is not None and msg.data == self.resend_probe[0]:
            stop, self.resend_probe = self.resend_probe[1], None
            if self.acked < stop and self.win.begin is None and self.win.frames:
                self._recover(self.acked)  # the frame sent again was lost again
            return
        if self.probe is None or msg.data != self.probe[0]:
            return
        consumed, self.probe = self.probe[2], None
        self._progress(time.monotonic())  # the device is alive
        self._advance_low()
        if self.low < consumed and self.redo is None:
            self.redo = time.monotonic()  # its RESULT was lost on the wire: BEGIN there once drained

    def _on_ack(self, offset: int) -> None:
        now = time.monotonic()
        if self.win.begin is not None:
            if offset != self.win.begin.start:
                return  # an ACK to a frame sent before the BEGIN
            self.win.begin_acked()
            self.begun = (offset // self.rec, self.dev_seq)
            self.acked = offset
            self._progress(now)
            return
        if offset > self.end:
            return
        if offset < self.acked:  # the device went back (re-processed a BEGIN)
            self.acked = offset
            self._go_back(offset)
            return
        if offset > self.acked:
            newest = self._advance_ack(offset, now, timed=True)
            first = self.win.frames[0] if self.win.frames else None
            if self.selective and first is not None and first.start == offset and first.order < newest:
                self._recover(offset)  # read before a frame now acknowledged, and not kept: lost

    def _advance_ack(self, offset: int, now: float, timed: bool) -> int:
        """The device has consumed the stream up to `offset` (an ACK, or a RESULT's records)."""
        if timed and self.timed_out is not None and offset >= self.timed_out[0]:
            _, arrived, copy_earliest = self.timed_out
            self.timed_out = None
            if now < copy_earliest:  # the timeout was spurious (Eifel): learn the delay it missed
                self.timing.saw_ack(now - arrived)
        self.acked_at[self.acked // self.rec: offset // self.rec] = now
        self.acked, self.last_ack = offset, now
        newest = 0  # the last sent of the frames this completes whose bytes can have arrived (Sent.order)
        for frame in self.win.acked(offset):
            self.sizer.outcome(frame.wire, lost=False)
            if timed and frame.fresh and self.strikes == 0:
                self.timing.saw_ack(now - frame.arrive)  # beyond the line time: latency, compute
            self._grow()
            if frame.arrive <= now:  # else the ACK answers an earlier copy of a frame sent again
                newest = max(newest, frame.order)
        self.next_send = max(self.next_send, offset)
        self._progress(now)
        return newest

    def _on_nack(self, expected: int) -> None:
        if self.win.begin is not None or expected > self.end:
            return
        if expected >= self.next_send and not self.win.frames:
            return  # nothing sent beyond it (a NACK of damaged bytes that were no frame of ours)
        now = time.monotonic()
        if expected > self.acked and self.selective:
            self._advance_ack(expected, now, timed=False)  # frames before the gap were consumed
        elif expected > self.acked:
            self.acked_at[self.acked // self.rec: expected // self.rec] = now
            self.acked = expected
            self._progress(now)
        elif expected < self.acked:
            self.acked = expected
        if self.selective and self.win.begin is None:
            frame = self.win.lost_at(expected)
            if frame is not None and not frame.fresh and now < frame.arrive:
                return  # about an earlier copy: the one sent again cannot have been read yet
        else:
            last_offset, last_time = self.last_goback
            if last_offset == expected and now - last_time < self._ack_timeout():
                return
        self._recover(expected, after_nack=True)

    def _on_result(self, msg: ResultBatch) -> None:
        now = time.monotonic()
        fresh = False
        if not msg.outputs:
            return
        if not self._asked_for(msg.first_record, len(msg.outputs)):
            self.faults.rejected_results += 1  # stale, or made up: never stored
            return
        for i, outputs in enumerate(msg.outputs):
            r = msg.first_record + i
            if r >= self.n or self.done[r]:
                continue
            self._finish(r)
            fresh = True
            self.out.append(_result(r, outputs, msg.cycles[i], msg.micros[i], now - self.sent_at[r]))
        if fresh:
            self._check_skipped(msg.first_record)
            last = min(msg.first_record + len(msg.outputs), self.n) - 1
            clean = np.isfinite(self.acked_at[last]) and self.strikes == 0
            delay = now - self.acked_at[last] if clean else None
            self.s.record_time = self.timing.saw_result(delay, max(msg.micros))
            self.dry = 0
            self._progress(now)
        end = min(msg.first_record + len(msg.outputs), self.n) * self.rec
        if self.win.begin is None and end > self.acked:
            self._advance_ack(end, now, timed=False)  # its ACK may have been lost

    def _redo_when_drained(self, now: float) -> bool:
        """BEGIN at a record whose RESULT was lost once what is in flight has been answered.

        A BEGIN sent at once would make the RESULTs of the records in flight stale (kept
        only for records sent since the last BEGIN): they would be sent and run again.
        False while waiting (nothing new is sent meanwhile; at most a result timeout).
        """
        assert self.redo is not None
        self._advance_low()
        consumed = self.acked // self.rec
        waiting = self.win.frames or not self.done[self.low + 1: consumed].all()
        if waiting and now - self.redo < self._result_timeout():
            return False
        self.redo = None
        self._resync()
        return True

    def _check_skipped(self, first: int) -> None:
        """A RESULT for `first` after the last BEGIN: records before it since then lost theirs.

        The device runs records in stream order and sends each one's RESULT (or ERROR) before
        the next one's, so a record it consumed since the BEGIN, before `first`, without an
        answer here had its answer damaged on the line: BEGIN there now instead of waiting
        for the result timeout.
        """
        record, seq = self.begun
        if seq is None or self.dev_seq is None or self.win.begin is not None or self.redo is not None:
            return
        if not 0 < (self.dev_seq - seq) & 0xFFFF < 0x8000:
            return  # sent before the BEGIN was answered: it says nothing about the records since
        self._advance_low()
        start = max(self.low, record)
        if start < first and not self.done[start] and self.sent_at[start] > 0:
            self.redo = time.monotonic()

    def _asked_for(self, first: int, count: int) -> bool:
        """Every record named is finished already (a duplicate) or was sent in full since the last BEGIN."""
        if first + count > self.n:
            return False
        span = slice(first, first + count)
        return bool(np.all(self.done[span] | (self.sent_at[span] > 0)))

    def _on_result_part(self, msg: ResultPart) -> None:
        """Reassemble an output record sent in RESULT_PARTs; a gap drops the record (resent later)."""
        have = getattr(self, "_parts", None)
        if have is None or have[0] != msg.record or msg.offset != len(have[1]):
            have = self._parts = (msg.record, bytearray()) if msg.offset == 0 else (None, bytearray())
            if msg.offset != 0:
                return
        have[1].extend(msg.data)
        if len(have[1]) >= self.s.hello.output_record_bytes:
            del self._parts  # the record is whole: the next part starts afresh (getattr above)
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
        self.strikes = self.quiet_strikes = 0
        self.last_strike = now

    def _advance_low(self) -> None:
        while self.low < self.n and self.done[self.low]:
            self.low += 1

    # --- timeouts ------------------------------------------------------------------------
    def _compute_s(self) -> float:
        return self.timing.compute_s(self.chunk // self.rec)

    def _ack_timeout(self) -> float:
        return self.timing.ack(self.chunk // self.rec, self._backoff_steps())

    def _result_timeout(self) -> float:
        return self.timing.result(self.chunk // self.rec, self._backoff_steps())

    def _noisy(self) -> bool:
        return time.monotonic() - self.damaged_at < NOISY_S

    def _backoff_steps(self) -> int:
        """Timeouts back off for a slow or silent device; on a noisy line a loss is only a loss."""
        return min(self.strikes, 1) if self._noisy() else self.strikes

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        if self.win.begin is not None:
            if now - self.win.begin.arrive > self._ack_timeout() and not self._strike("no ACK to BEGIN"):
                self._begin(self.win.begin.start // self.rec)
                self.faults.retries += 1
            return
        if self.win.frames:
            since = max(self.last_ack, self.win.frames[0].arrive)  # its bytes reached the device
            if now - since > self._ack_timeout():
                oldest = self.win.frames[0]
                stop, arrived, wire = oldest.stop, oldest.arrive, oldest.wire
                if not self._strike(f"no ACK beyond stream offset {self.acked}"):
                    self._recover(self.acked)
                    # its copy cannot be acknowledged before this: an ACK sooner answers the original
                    self.timed_out = (stop, arrived, now + wire * self.timing.byte_s)
                return
        self._advance_low()
        if self.low >= self.n or self.sent_at[self.low] == 0:
            return
        acked = self.acked_at[self.low]
        if np.isfinite(acked) and self.redo is None:  # (a lost RESULT already waits for its BEGIN)
            self._check_result(now, acked)
        elif (now - max(self.arrived_at[self.low], self.last_ack) > self._result_timeout() + self._ack_timeout()
              and not self._strike(f"record {self.low} was sent but never acknowledged")):
            self._resync()

    def _check_result(self, now: float, acked: float) -> None:
        """A consumed record without RESULT: PING, and let the PONG tell whether it was lost.

        The device answers a PING only after the RESULTs of everything it consumed
        before it, so a slow inference is waited for, not recomputed.
        """
        if self.probe is None:
            if now - acked > self._result_timeout():
                self._send_probe(now)
        elif (now - self.probe[1] > self._result_timeout() + self._ack_timeout()
              and not self._strike(f"no RESULT for record {self.low} and no PONG")):
            self._send_probe(now)

    def _send_probe(self, now: float) -> None:
        self._probes += 1
        token = b"dk-probe" + self._probes.to_bytes(4, "little")
        wire = self.link.send(Ping(token))
        self.probe = (token, self.win.arrival(wire, now), self.acked // self.rec)  # it queues behind INPUT

    def _count_dry(self, what: str) -> None:
        """Recoveries that bring no new result are bounded too (4 x max_retries per frame of a record)."""
        self.dry += 1
        bound = 4 * self.s.max_retries * -(-self.rec // max(self.chunk, 1))
        if self.dry > bound:
            self._give_up(what, bound)

    def _give_up(self, what: str, retries: int) -> None:
        done = f"{self.n_done} of {self.n} samples done (faults: {self.faults.as_dict()})"
        raise DeviceError(f"{self._symptom()} ({what}) and {retries} retries did not help; {done}; "
                          f"{self._likely_cause()}")

    def _protocol_errors(self) -> int:
        """ERRORs the device sent about our frames (not failed inferences): it speaks another protocol."""
        return sum(1 for e in self.s.errors if e.code != ErrorCode.INVOKE_FAILED)

    def _silent(self) -> bool:
        """Nothing at all arrived during the last timeouts (or for SILENT_S), and no damaged bytes lately."""
        if self._noisy() or self.damaged_at >= self.heard:
            # a line that damages frames also loses whole answers: when the last thing that
            # arrived was a damaged frame, that is the line, not a silent device
            return False
        return self.quiet_strikes >= 2 or time.monotonic() - self.heard_any > SILENT_S

    def _symptom(self) -> str:
        verb = "stopped responding" if self._silent() else "answers but the run made no progress"
        return f"the device on {self.s.url} {verb}"

    def _likely_cause(self) -> str:
        """What the counters point at, and what to do about it."""
        f = self.faults
        if self._silent():
            return "it went silent: reset the board and run again to resume"
        # on a damaging line, results of records sent before a BEGIN (and their repeats) and
        # errors about damaged frames are the line's doing: blame the firmware on a clean line only
        if (f.rejected_results or self._protocol_errors()) and not f.crc_errors:
            return (f"it answered {f.rejected_results} times for records it was not sent and sent "
                    f"{self._protocol_errors()} protocol errors: it likely runs firmware other than this "
                    "manifest's; rebuild and flash it (`deploykit deploy`), then run again to resume")
        if f.crc_errors or f.retries:
            return (f"the line damages or drops frames ({f.crc_errors} damaged frames received, "
                    f"{f.retries} resends): check the cable and the port, try a lower --baud, then run "
                    "again to resume")
        return "run again to resume; if it happens again, reset the board"

    def _strike(self, what: str) -> bool:
        """Count a recovery without progress; True when it escalated to a re-handshake.

        Gives up with a DeviceError once max_retries strikes passed without progress.
        """
        self.strikes += 1
        now = time.monotonic()
        self.quiet_strikes = self.quiet_strikes + 1 if self.heard_any < self.last_strike else 0
        self.last_strike = now
        bound = self.s.max_retries * (4 if self._noisy() else 1)  # noise: losses in a row happen
        if self.strikes > bound:
            self._give_up(what, bound)
        if self.strikes >= 4 and self.strikes % (8 if self._noisy() else 2) == 0:
            try:
                self.s.handshake(patience=self._compute_s() * backoff(self._backoff_steps()),
                                 other=self._dispatch)
            except DeviceError as exc:
                if self.faults.crc_errors == 0 or type(exc) is not DeviceError:
                    raise  # silence, or another model (StaleFirmware)
                return False  # a noisy line ate the HELLOs: one more strike, not the end
            self._configure(self.s.hello)
            self.dev_seq = None
            self.win.reset()
            self._restart()
            return True
        return False


def _damaged(event) -> bool:
    """A chunk that is no frame and no text: bytes damaged on the line."""
    return isinstance(event, FrameError) and not _looks_like_text(event.raw)


def _result(r, outputs, cycles, micros, rtt):
    return SampleResult(r, outputs, int(cycles), int(micros), float(rtt))
