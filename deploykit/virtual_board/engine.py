"""The device side of the wire protocol as a pure state machine over simulated time.

No threads, no I/O: `receive(data, t, byte_time)` delivers bytes that reached the
device's UART (byte i at t + i × byte_time), `advance(now)` lets simulated time pass, and
`out` collects what the device wrote, as (time, bytes, is_frame). It follows the "Device
behaviour" section of docs/protocol.md, and models the parts of a board that a harness
can feel:

- While an inference runs the CPU does not read the UART: bytes land in a receive ring
  of `rx_buffer_bytes`; bytes beyond it are dropped. The RESULT goes out when the
  simulated inference time has passed; the ACK of the frame went out before it ran.
- Error codes, details and texts are the C++ core's (firmware_templates/src/dk_protocol.cpp).
- A firmware announcing SELECTIVE_ACK keeps INPUT data that arrives after a gap (one
  contiguous run of at most max_payload bytes, the C++ core's hold buffer) and consumes
  it once the gap is filled, so the host resends only the missing frame; it also NACKs
  a damaged chunk, as it does a gap, and sends its next REPEAT_RESULTS RESULTs twice.
- A reboot (RESET, DTR, a fault) loses all state, is deaf for `boot_seconds`, then prints
  a boot banner as plain text and sends HELLO and a LOG labelling the arena figure.
"""

from __future__ import annotations

import math
from typing import cast

from deploykit.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Begin,
    ErrorMsg,
    Frame,
    FrameDecoder,
    HelloRequest,
    Input,
    Log,
    Nack,
    Ping,
    Pong,
    Reset,
    ResultBatch,
    ResultPart,
    encode_message,
)
from deploykit.protocol.messages import (
    DType,
    ErrorCode,
    OpTimes,
    OpTimingRequest,
    ProtocolError,
    TensorChunk,
    TensorDumpRequest,
    TimedLoop,
    TimedLoopRequest,
    _varint,
    result_part_size,
    results_chunked,
)
from deploykit.protocol.spec import (
    OP_TIME_ENTRY,
    OP_TIMES_HEAD,
    REPEAT_RESULTS,
    RESULT_HEAD,
    RESULT_MAX_RUN as MAX_RUN_BYTES,
    TENSOR_CHUNK_HEAD,
    Capability,
)
from deploykit.virtual_board.faults import FaultInjector

HANDLED = {m.TYPE: m for m in (HelloRequest, Ping, Reset, Begin, Input, OpTimingRequest, TensorDumpRequest,
                                TimedLoopRequest)}
NEEDS = {OpTimingRequest.TYPE: Capability.OP_TIMING, TensorDumpRequest.TYPE: Capability.TENSOR_DUMP,
         TimedLoopRequest.TYPE: Capability.TIMED_LOOP}
STUCK_AFTER = 1 << 20   # the C++ core's timed loop gives up on a timer reading 0 after this many


class DeviceEngine:
    """One simulated board running the rendered firmware's protocol loop."""

    def __init__(self, firmware, faults: FaultInjector | None = None, timed: bool = True,
                 boot_seconds: float = 0.05):
        self.fw = firmware
        self.faults = faults or FaultInjector()
        _check_perturb(self.faults, firmware)
        self.timed = timed
        self.boot_seconds = boot_seconds if timed else 0.0
        self.capacity = firmware.hello.rx_window
        self.out: list[tuple[float, bytes, bool]] = []
        self.stats = {"boots": 0, "dropped_rx": 0, "bad_frames": 0, "inferences": 0}
        self.powered = False
        self.disconnect_requested = False
        self.power_on(0.0)

    # ----- life cycle -------------------------------------------------------------
    def power_on(self, now: float) -> None:
        """Boot: lose all state, stay deaf while booting, then banner, HELLO, LOG."""
        self._clear_state()
        self.out = [item for item in self.out if item[0] <= now]  # unsent results die with it
        self.powered = True
        self.stats["boots"] += 1
        ready = now + self.boot_seconds
        self.deaf_until = self.busy_until = ready
        self.out.append((ready, self.fw.banner, False))
        self._send(self.fw.hello, ready)
        self._send(Log(self.fw.arena_note), ready)

    def power_off(self) -> None:
        """The board is gone (USB disconnect): it hears nothing until power_on()."""
        self._clear_state()
        self.out.clear()
        self.powered = False

    def _clear_state(self) -> None:
        self.seq = 0
        self.expected = 0
        self.next_record = 0
        self.record_buf = bytearray()
        self.pending: list[tuple[int, bytes]] = []
        self.nacked: int | None = None
        self.held = (0, bytearray())  # (stream offset, bytes) kept after a gap (selective repeat)
        self.repeat = 0               # RESULTs still to send twice since the last damaged chunk
        self.decoder = FrameDecoder(self.fw.hello.max_payload)
        self.rx = bytearray()
        self.busy_until = self.deaf_until = 0.0
        self.last: tuple[int, bytes] | None = None  # (record, input) of the last inference

    # ----- bytes in ---------------------------------------------------------------
    def receive(self, data: bytes, t: float, byte_time: float = 0.0) -> None:
        """Bytes reaching the UART: byte i at time t + i × byte_time."""
        i = 0
        while i < len(data):
            now = t + i * byte_time
            self.advance(now)
            if not self.powered or now < self.deaf_until:
                n = self._arriving_before(self.deaf_until if self.powered else float("inf"), t, i, len(data), byte_time)
                self.stats["dropped_rx"] += n
            elif now < self.busy_until:
                n = self._arriving_before(self.busy_until, t, i, len(data), byte_time)
                self._buffer(data[i:i + n])
            else:
                end = data.find(0, i)
                n = (len(data) if end < 0 else end + 1) - i
                self._process(data[i:i + n], t + (i + n - 1) * byte_time)
            i += n

    @staticmethod
    def _arriving_before(limit: float, t: float, i: int, total: int, byte_time: float) -> int:
        if byte_time <= 0 or limit == float("inf"):
            return total - i
        k = math.ceil((limit - t) / byte_time) - i
        return max(1, min(total - i, k))

    def _buffer(self, data: bytes) -> None:
        room = self.capacity - len(self.rx)
        self.rx += data[:max(room, 0)]
        self.stats["dropped_rx"] += max(len(data) - max(room, 0), 0)

    def advance(self, now: float) -> None:
        """Let time pass to `now`: once the CPU is free it drains the receive ring."""
        while self.powered and self.rx and self.busy_until <= now:
            t = self.busy_until
            while self.rx and self.busy_until <= t:
                end = self.rx.find(0)
                n = len(self.rx) if end < 0 else end + 1
                chunk = bytes(self.rx[:n])
                del self.rx[:n]
                self._process(chunk, t)

    def next_due(self) -> float | None:
        """When the device will next act without new input (drain the ring), if ever."""
        return self.busy_until if self.powered and self.rx else None

    def take_output(self, now: float) -> list[tuple[float, bytes, bool]]:
        """Remove and return what the device has written by `now`, in order."""
        n = 0
        while n < len(self.out) and self.out[n][0] <= now:
            n += 1
        items, self.out = self.out[:n], self.out[n:]
        return items

    # ----- frames -----------------------------------------------------------------
    def _process(self, chunk: bytes, t: float) -> None:
        for event in self.decoder.feed(chunk):
            if isinstance(event, Frame):
                self._handle(event, t)
            else:
                self.stats["bad_frames"] += 1
                self._on_damaged(t)

    def _on_damaged(self, t: float) -> None:
        """A damaged chunk (selective repeat): likely the frame at `expected`, so NACK it at once.

        Every time (a frame sent again may be damaged again); without this, losing every
        frame in flight, or a frame sent again, would wait for the host's timeout, since no
        later frame shows the gap. The host tells an answer to an old copy by its timing.
        """
        if self._selective():
            self.nacked = self.expected
            self.repeat = REPEAT_RESULTS  # the line damages frames: a lost RESULT costs a record run again
            self._send(Nack(self.expected), t)

    def _selective(self) -> bool:
        return bool(self.fw.hello.capabilities & Capability.SELECTIVE_ACK)

    def _handle(self, frame: Frame, t: float) -> None:
        if frame.version != PROTOCOL_VERSION:
            return self._error(ErrorCode.BAD_VERSION, frame.version, "unsupported protocol version", t)
        cls = HANDLED.get(frame.type)
        if cls is None or not self._built_with(frame.type):
            return self._error(ErrorCode.UNKNOWN_TYPE, frame.seq, "unknown message type", t)
        try:
            msg = cls.parse(frame.payload)
        except ProtocolError:
            return self._error(ErrorCode.BAD_PAYLOAD, frame.seq, "payload does not parse", t)
        getattr(self, f"_on_{cls.__name__.lower()}")(msg, t)

    def _built_with(self, msg_type: int) -> bool:
        """A diagnostics request is known only to a firmware that advertises its capability."""
        need = NEEDS.get(msg_type)
        if need is None:
            return True
        if need == Capability.TIMED_LOOP:  # reruns the last record: no diagnostics hooks needed
            return bool(self.fw.hello.capabilities & need)
        return bool(self.fw.hello.capabilities & need and self.fw.diagnostics is not None)

    def _ran(self, record: int, t: float) -> bool:
        """The last inference was of `record`; else ERROR NOT_RUN, as the C++ core answers."""
        if self.last is None or self.last[0] != record:
            self._error(ErrorCode.NOT_RUN, record, "not the record run last", t)
            return False
        return True

    def _on_optimingrequest(self, msg, t: float) -> None:
        if not self._ran(msg.record, t):
            return
        times = self.fw.diagnostics.op_times
        per_frame = max(1, (self.fw.hello.max_payload - OP_TIMES_HEAD) // OP_TIME_ENTRY)
        for first in range(0, max(len(times), 1), per_frame):
            self._send(OpTimes(msg.record, first, len(times), times[first:first + per_frame]), t)

    def _on_tensordumprequest(self, msg, t: float) -> None:
        if not self._ran(msg.record, t):
            return
        room = self.fw.hello.max_payload - TENSOR_CHUNK_HEAD
        if msg.max_chunk:
            room = min(room, msg.max_chunk)
        if room <= 0:
            return self._error(ErrorCode.OVERFLOW, TENSOR_CHUNK_HEAD + 1, "no room for tensor chunks", t)
        assert self.last is not None  # _ran() checked that this record ran
        ops = self.fw.diagnostics.dump(self.fw.split(self.last[1]), self.faults)
        for op_outputs in ops:
            for out in op_outputs:
                data = out.data
                for offset in range(0, max(len(data), 1), room):
                    self._send(TensorChunk(msg.record, out.op, len(ops), out.output, len(op_outputs), out.tensor,
                                           int(DType[out.dtype]), len(data), offset, data[offset:offset + room]), t)

    def _on_timedlooprequest(self, msg, t: float) -> None:
        """The last record back to back until its inferences add up to min_ms (once for 0),
        answered from the cost model at once: simulated time passes, the host's clock need not."""
        if self.record_buf:  # part of the next record overwrote the last one, as on the C++ core
            return self._error(ErrorCode.NOT_RUN, msg.record, "not the record run last", t)
        if not self._ran(msg.record, t):
            return
        assert self.last is not None
        try:
            self._run(self.last[1])
        except Exception:  # the firmware reports a failed Invoke, as for a record
            return self._error(ErrorCode.INVOKE_FAILED, msg.record, "Invoke failed", t)
        n = loop_iterations(self.fw.timing.micros, msg.min_ms)
        self.stats["inferences"] += n
        done = t + (n * self.fw.timing.seconds if self.timed else 0.0)
        self.busy_until = max(self.busy_until, done)
        self._send(TimedLoop(msg.record, n, n * self.fw.timing.cycles, n * self.fw.timing.micros), done)

    def _on_hellorequest(self, msg, t: float) -> None:
        self._send(self.fw.hello, t)

    def _on_ping(self, msg, t: float) -> None:
        self._send(Pong(msg.data), t)

    def _on_reset(self, msg, t: float) -> None:
        self.power_on(t)

    def _on_begin(self, msg, t: float) -> None:
        self.next_record = msg.record
        self.expected = msg.record * self.fw.in_record
        self.record_buf.clear()
        self.pending.clear()
        self.nacked = None
        self.held = (0, bytearray())
        self._send(Ack(self.expected), t)

    def _on_input(self, msg, t: float) -> None:
        start, end = msg.offset, msg.offset + len(msg.data)
        if end <= self.expected:
            return self._send(Ack(self.expected), t)
        if start > self.expected:
            self._hold(start, msg.data)
            if self.nacked != self.expected:
                self.nacked = self.expected
                self._send(Nack(self.expected), t)
            return
        self.record_buf += msg.data[self.expected - start:]
        self.expected = end
        self._take_held()
        self._send(Ack(self.expected), t)
        self._run_records(t)

    def _hold(self, start: int, data: bytes) -> None:
        """Keep a frame after a gap when it starts the held run or extends it (as the C++ core)."""
        if not self._selective():
            return
        held_at, held = self.held
        if not held and len(data) <= self.fw.hello.max_payload:
            self.held = (start, bytearray(data))
        elif held and start == held_at + len(held) and len(held) + len(data) <= self.fw.hello.max_payload:
            held += data

    def _take_held(self) -> None:
        """The gap is filled: consume the held bytes past `expected`, then forget them."""
        held_at, held = self.held
        if held and held_at <= self.expected:
            if held_at + len(held) > self.expected:
                self.record_buf += held[self.expected - held_at:]
                self.expected = held_at + len(held)
            self.held = (0, bytearray())

    # ----- inference ----------------------------------------------------------------
    def _run_records(self, t: float) -> None:
        """Run every complete record in order; results go out when simulated time allows."""
        size, clock = self.fw.in_record, t
        while len(self.record_buf) >= size:
            record = self.next_record
            for kind, arg in self.faults.before_record(record):
                if kind == "stall":
                    clock += cast(float, arg)  # a stall carries its seconds
                elif kind == "reset":
                    return self.power_on(clock)
                else:
                    self.disconnect_requested = True
                    return self.power_off()
            data = bytes(self.record_buf[:size])
            del self.record_buf[:size]
            self.next_record += 1
            clock = self._infer(record, data, clock)
        self._flush(clock)
        self.busy_until = max(self.busy_until, clock)

    def _infer(self, record: int, data: bytes, clock: float) -> float:
        if self.pending and not self._has_room():
            self._flush(clock)              # before this inference, as the C++ core does
        try:
            output = self._run(data)
        except Exception as exc:  # the firmware reports a failed Invoke, it does not crash
            self._flush(clock)
            self._error(ErrorCode.INVOKE_FAILED, record, "Invoke failed", clock)
            self._send(Log(f"simulated: TFLM Invoke raised {type(exc).__name__}: {exc}"[:200]), clock)
            return clock
        self.stats["inferences"] += 1
        output = self.faults.outputs.apply(output, self.fw.hello.outputs)  # a wrong device, if asked
        self.last = (record, data)
        if results_chunked(self.fw.out_record, self.fw.hello.max_payload):
            self._flush(clock)
            self._send_parts(record, output, clock)
        else:
            self.pending.append((record, output))
        return clock + (self.fw.timing.seconds if self.timed else 0.0)

    def _run(self, data: bytes) -> bytes:
        """The firmware's outputs; with the perturb_op fault, those of the miscomputed model."""
        if self.faults.spec.perturb_op is None or self.fw.diagnostics is None:
            return self.fw.infer(data)
        return b"".join(self.fw.diagnostics.perturbed(self.faults).outputs(self.fw.split(data)))

    def _has_room(self) -> bool:
        """Room for one more output record: the C++ ResultBatch::HasRoom rule."""
        timing, n = self.fw.timing, len(self.pending)
        runs = len(_varint(n)) + len(_varint(timing.cycles)) + len(_varint(timing.micros))
        size = RESULT_HEAD + n * self.fw.out_record + runs
        return n < 0xFFFF and size + self.fw.out_record + MAX_RUN_BYTES <= self.fw.hello.max_payload

    def _send_parts(self, record: int, output: bytes, t: float) -> None:
        """An output record too large for one RESULT: RESULT_PARTs, as the C++ core sends them."""
        timing, step = self.fw.timing, result_part_size(self.fw.hello.max_payload)
        for off in range(0, len(output), step):
            self._send(ResultPart(record, off, timing.cycles, timing.micros, output[off:off + step]), t)

    def _flush(self, t: float) -> None:
        if not self.pending:
            return
        timing = self.fw.timing
        n = len(self.pending)
        batch = ResultBatch(self.pending[0][0], tuple(o for _, o in self.pending),
                            (timing.cycles,) * n, (timing.micros,) * n)
        self._send(batch, t)
        if self.repeat > 0:  # on a noisy line, twice (as the C++ core): hosts drop the duplicate
            self.repeat -= 1
            self._send(batch, t)
        self.pending = []

    # ----- bytes out ----------------------------------------------------------------
    def _error(self, code: int, detail: int, text: str, t: float) -> None:
        self._send(ErrorMsg(int(code), int(detail), text), t)

    def _send(self, msg, t: float) -> None:
        self.out.append((t, encode_message(msg, self.seq), True))
        self.seq = (self.seq + 1) & 0xFFFF


def loop_iterations(micros: int, min_ms: int) -> int:
    """Inferences of `micros` each a timed loop of at least `min_ms` runs: the C++ core's
    do-while (at least one; it stops once the sum reaches min_ms, or a zero timer gets stuck)."""
    target = min_ms * 1000
    if target == 0:
        return 1
    if micros <= 0:
        return STUCK_AFTER
    return max(1, -(-target // micros))


def _check_perturb(faults: FaultInjector, firmware) -> None:
    """A perturb_op fault must name an operator of the model (BadInput, exit 2, at start)."""
    op = faults.spec.perturb_op
    if op is None:
        return
    from deploykit.errors import BadInput
    if firmware.diagnostics is None:
        raise BadInput(f"fault perturb_op={op} needs a model the virtual board can run")
    n_ops = len(firmware.diagnostics.op_times)
    if op >= n_ops:
        raise BadInput(f"fault perturb_op={op}: the model has operators 0..{n_ops - 1}")
