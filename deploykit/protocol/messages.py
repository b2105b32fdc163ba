"""Typed messages and their payload layouts (all integers little-endian).

Host to device: HELLO_REQ, PING, RESET, BEGIN, INPUT, OP_TIMING_REQ, TENSOR_DUMP_REQ.
Device to host: HELLO, PONG, ACK, NACK, RESULT, ERROR, LOG, OP_TIMES, TENSOR_CHUNK.
docs/protocol.md is the normative description.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from deploykit.errors import DeviceError
from deploykit.protocol.framing import Frame, encode_frame
from deploykit.protocol.spec import (  # noqa: F401  (DType, TimerKind, ErrorCode, Capability: re-exported)
    FIRMWARE_ID_BYTES,
    HELLO_FLAG_SIMULATED,
    MAX_DIMS,
    PROTOCOL_VERSION,
    RESULT_HEAD,
    RESULT_OVERHEAD,
    RESULT_PART_HEAD,
    TIMED_LOOP_BYTES,
    Capability,
    DType,
    ErrorCode,
    MsgType,
    TimerKind,
)


class ProtocolError(DeviceError, ValueError):
    """A CRC-valid frame whose payload does not parse (the decoder's only exception)."""


_TENSOR_TAIL = struct.Struct("<fi")


@dataclass(frozen=True)
class TensorSpec:
    dtype: DType
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DType(self.dtype).itemsize

    def pack(self) -> bytes:
        dims = struct.pack(f"<BB{len(self.shape)}H", self.dtype, len(self.shape), *self.shape)
        return dims + _TENSOR_TAIL.pack(self.scale, self.zero_point)

    @classmethod
    def unpack_from(cls, buf: bytes, offset: int) -> tuple[TensorSpec, int]:
        dtype, ndims = struct.unpack_from("<BB", buf, offset)
        if dtype not in DType.__members__.values() or ndims > MAX_DIMS:
            raise ProtocolError(f"tensor spec with dtype code {dtype} and {ndims} dims: "
                                f"not one the protocol carries")
        offset += 2
        shape = struct.unpack_from(f"<{ndims}H", buf, offset)
        offset += 2 * ndims
        scale, zero_point = _TENSOR_TAIL.unpack_from(buf, offset)
        return cls(DType(dtype), tuple(shape), scale, zero_point), offset + _TENSOR_TAIL.size

    @classmethod
    def from_manifest(cls, spec: dict) -> TensorSpec:
        return cls(DType[spec["dtype"]], tuple(int(d) for d in spec["shape"]),
                   float(spec.get("scale") or 0.0), int(spec.get("zero_point") or 0))


def record_bytes(specs) -> int:
    """Bytes of one record: all tensors of one sample, concatenated in order."""
    return sum(s.nbytes for s in specs)


class Message:
    TYPE: ClassVar[int]

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, payload: bytes):
        if payload:
            raise ProtocolError(f"{cls.__name__} takes no payload")
        return cls()


def _u32_message(name: str, type_code: int, field_name: str, doc: str):
    fmt = struct.Struct("<I")

    def payload(self) -> bytes:
        return fmt.pack(getattr(self, field_name))

    def parse(cls, data: bytes):
        if len(data) != fmt.size:
            raise ProtocolError(f"{name} payload must be 4 bytes, got {len(data)}")
        return cls(fmt.unpack(data)[0])

    ns = {"TYPE": type_code, "payload": payload, "parse": classmethod(parse), "__doc__": doc,
          "__annotations__": {field_name: int}}
    return dataclass(frozen=True)(type(name, (Message,), ns))


@dataclass(frozen=True)
class HelloRequest(Message):
    """Ask the device to announce itself."""

    TYPE: ClassVar[int] = MsgType.HELLO_REQ


@dataclass(frozen=True)
class Reset(Message):
    """Ask the device to reboot; it announces itself with HELLO afterwards."""

    TYPE: ClassVar[int] = MsgType.RESET


@dataclass(frozen=True)
class Ping(Message):
    TYPE: ClassVar[int] = MsgType.PING
    data: bytes = b""

    def payload(self) -> bytes:
        return self.data

    @classmethod
    def parse(cls, payload: bytes):
        return cls(bytes(payload))


@dataclass(frozen=True)
class Pong(Ping):
    TYPE: ClassVar[int] = MsgType.PONG


Begin = _u32_message("Begin", MsgType.BEGIN, "record", "Start (or restart) the input stream at record R.")
Ack = _u32_message("Ack", MsgType.ACK, "next_offset", "All input-stream bytes below next_offset are consumed.")
Nack = _u32_message("Nack", MsgType.NACK, "expected_offset", "A gap: resend the stream from expected_offset.")
OpTimingRequest = _u32_message("OpTimingRequest", MsgType.OP_TIMING_REQ, "record",
                               "Per-operator ticks of the last inference, which must have been of `record`.")


@dataclass(frozen=True)
class TensorDumpRequest(Message):
    """Every operator's outputs of the last inference, which must have been of `record`,
    in TENSOR_CHUNKs of at most `max_chunk` data bytes (0: as many as max_payload allows;
    a host on a noisy link asks for smaller chunks, so fewer are lost)."""

    TYPE: ClassVar[int] = MsgType.TENSOR_DUMP_REQ
    record: int
    max_chunk: int = 0

    def payload(self) -> bytes:
        return struct.pack("<IH", self.record, self.max_chunk)

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) != 6:
            raise ProtocolError(f"TENSOR_DUMP_REQ payload must be 6 bytes, got {len(payload)}")
        return cls(*struct.unpack("<IH", payload))


@dataclass(frozen=True)
class Input(Message):
    """Bytes [offset, offset+len(data)) of the input stream (records back to back)."""

    TYPE: ClassVar[int] = MsgType.INPUT
    offset: int
    data: bytes

    def payload(self) -> bytes:
        return struct.pack("<I", self.offset) + self.data

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) < 4:
            raise ProtocolError("INPUT payload shorter than its 4-byte offset")
        return cls(struct.unpack_from("<I", payload)[0], bytes(payload[4:]))


_HELLO_HEAD = struct.Struct("<BBHHBIII32s16sI")


@dataclass(frozen=True)
class Hello(Message):
    """The device's identity, limits and tensor specs.

    `firmware_id` is the build id render stamps into the firmware (b"" when the device
    has none: all zeros on the wire); `capabilities` holds spec.Capability bits.
    """

    TYPE: ClassVar[int] = MsgType.HELLO
    board_id: str
    model_sha256: bytes
    cpu_hz: int
    timer: TimerKind
    arena_configured: int
    arena_used: int
    max_payload: int
    rx_window: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    simulated: bool = False
    protocol_version: int = PROTOCOL_VERSION
    firmware_id: bytes = b""
    capabilities: int = 0

    @property
    def input_record_bytes(self) -> int:
        return record_bytes(self.inputs)

    @property
    def output_record_bytes(self) -> int:
        return record_bytes(self.outputs)

    def payload(self) -> bytes:
        board = self.board_id.encode("utf-8")
        if len(self.firmware_id) not in (0, FIRMWARE_ID_BYTES):
            raise ProtocolError(f"firmware_id must be {FIRMWARE_ID_BYTES} bytes or empty")
        out = _HELLO_HEAD.pack(self.protocol_version, HELLO_FLAG_SIMULATED if self.simulated else 0,
                               self.max_payload, self.rx_window, self.timer, self.cpu_hz,
                               self.arena_configured, self.arena_used, self.model_sha256,
                               self.firmware_id or bytes(FIRMWARE_ID_BYTES), self.capabilities)
        out += bytes([len(board)]) + board
        for specs in (self.inputs, self.outputs):
            out += bytes([len(specs)]) + b"".join(s.pack() for s in specs)
        return out

    @classmethod
    def parse(cls, payload: bytes):
        try:
            (version, flags, max_payload, window, timer, hz, configured, used, sha, firmware_id,
             capabilities) = _HELLO_HEAD.unpack_from(payload)
            off = _HELLO_HEAD.size
            n = payload[off]
            board = payload[off + 1: off + 1 + n].decode("utf-8")
            if len(board.encode("utf-8")) != n:
                raise ProtocolError("HELLO board id is cut short")
            off += 1 + n
            specs = []
            for _ in range(2):
                count, off = payload[off], off + 1
                group = []
                for _ in range(count):
                    spec, off = TensorSpec.unpack_from(payload, off)
                    group.append(spec)
                specs.append(tuple(group))
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"HELLO payload does not parse: {exc}") from exc
        if off != len(payload):
            raise ProtocolError(f"HELLO payload has {len(payload) - off} trailing bytes")
        if timer not in TimerKind.__members__.values():
            raise ProtocolError(f"HELLO names timer kind {timer}, which this deploykit does not know "
                                f"(known: {', '.join(f'{t.value} {t.name}' for t in TimerKind)})")
        return cls(board, sha, hz, TimerKind(timer), configured, used, max_payload, window,
                   specs[0], specs[1], bool(flags & HELLO_FLAG_SIMULATED), version,
                   b"" if not any(firmware_id) else firmware_id, capabilities)


@dataclass(frozen=True)
class ResultBatch(Message):
    """Outputs of `count` consecutive records starting at `first_record`, with timings.

    Timings are run-length encoded: (run, cycles, micros) triples of LEB128 varints,
    so identical timings (deterministic kernels) cost a few bytes per batch.
    """

    TYPE: ClassVar[int] = MsgType.RESULT
    first_record: int
    outputs: tuple[bytes, ...]
    cycles: tuple[int, ...]
    micros: tuple[int, ...]

    def payload(self) -> bytes:
        out = struct.pack("<IH", self.first_record, len(self.outputs)) + b"".join(self.outputs)
        for run, cyc, us in _runs(self.cycles, self.micros):
            out += _varint(run) + _varint(cyc) + _varint(us)
        return out

    @classmethod
    def parse_with(cls, payload: bytes, output_record_bytes: int):
        """Parse; the record size comes from the HELLO, it is not on the wire."""
        try:
            first, count = struct.unpack_from("<IH", payload)
            off = RESULT_HEAD
            end = off + count * output_record_bytes
            if end > len(payload):
                raise ProtocolError("RESULT shorter than its outputs")
            outputs = tuple(bytes(payload[off + i * output_record_bytes: off + (i + 1) * output_record_bytes])
                            for i in range(count))
            cycles: list[int] = []
            micros: list[int] = []
            off = end
            while len(cycles) < count:
                run, off = _read_varint(payload, off)
                cyc, off = _read_varint(payload, off)
                us, off = _read_varint(payload, off)
                if run == 0 or len(cycles) + run > count:
                    raise ProtocolError("RESULT timing runs do not add up to its count")
                cycles += [cyc] * run
                micros += [us] * run
        except (struct.error, IndexError) as exc:
            raise ProtocolError(f"RESULT payload does not parse: {exc}") from exc
        if off != len(payload):
            raise ProtocolError(f"RESULT payload has {len(payload) - off} trailing bytes")
        return cls(first, outputs, tuple(cycles), tuple(micros))

    @classmethod
    def parse(cls, payload: bytes):
        raise ProtocolError("RESULT needs the output record size: use decode_message(frame, hello)")


@dataclass(frozen=True)
class ErrorMsg(Message):
    """An error the device reports: code, a detail (record or offset), text."""

    TYPE: ClassVar[int] = MsgType.ERROR
    code: int
    detail: int
    text: str

    def payload(self) -> bytes:
        return struct.pack("<HI", self.code, self.detail) + self.text.encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) < 6:
            raise ProtocolError("ERROR payload shorter than 6 bytes")
        code, detail = struct.unpack_from("<HI", payload)
        return cls(code, detail, payload[6:].decode("utf-8", "replace"))


@dataclass(frozen=True)
class Log(Message):
    """Device text (TFLM's log output, firmware messages) carried in a frame."""

    TYPE: ClassVar[int] = MsgType.LOG
    text: str

    def payload(self) -> bytes:
        return self.text.encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes):
        return cls(payload.decode("utf-8", "replace"))


_OP_TIMES_HEAD = struct.Struct("<IHH")
_OP_TIME = struct.Struct("<HHI")


@dataclass(frozen=True)
class OpTimes(Message):
    """Per-operator ticks of one inference (capability OP_TIMING), split over frames.

    `entries` are (op_index, op_code, ticks): op_code is the TFLite builtin operator
    code, ticks are the board's timer (cycles on a cycle-counter board, else
    microseconds). This frame carries entries first..first+len-1 of `total`.
    """

    TYPE: ClassVar[int] = MsgType.OP_TIMES
    record: int
    first: int
    total: int
    entries: tuple[tuple[int, int, int], ...]

    def payload(self) -> bytes:
        return _OP_TIMES_HEAD.pack(self.record, self.first, self.total) + b"".join(
            _OP_TIME.pack(*e) for e in self.entries)

    @classmethod
    def parse(cls, payload: bytes):
        body = len(payload) - _OP_TIMES_HEAD.size
        if body < 0 or body % _OP_TIME.size:
            raise ProtocolError(f"OP_TIMES payload of {len(payload)} bytes is not a head plus whole entries")
        record, first, total = _OP_TIMES_HEAD.unpack_from(payload)
        entries = tuple(_OP_TIME.unpack_from(payload, _OP_TIMES_HEAD.size + i * _OP_TIME.size)
                        for i in range(body // _OP_TIME.size))
        if first + len(entries) > total:
            raise ProtocolError(f"OP_TIMES entries {first}..{first + len(entries) - 1} exceed its total {total}")
        return cls(record, first, total, entries)


_CHUNK_HEAD = struct.Struct("<IHHBBHBII")


@dataclass(frozen=True)
class TensorChunk(Message):
    """Bytes [offset, offset+len(data)) of output `output` (of n_outputs) of operator `op`
    (of n_ops) in one inference (capability TENSOR_DUMP). `tensor` is its index in the
    model's subgraph 0, `dtype` a spec.DType code, `total` its size in bytes.
    """

    TYPE: ClassVar[int] = MsgType.TENSOR_CHUNK
    record: int
    op: int
    n_ops: int
    output: int
    n_outputs: int
    tensor: int
    dtype: int
    total: int
    offset: int
    data: bytes

    @property
    def last(self) -> bool:
        """The final chunk of the whole dump."""
        return (self.op + 1 == self.n_ops and self.output + 1 == self.n_outputs
                and self.offset + len(self.data) == self.total)

    def payload(self) -> bytes:
        return _CHUNK_HEAD.pack(self.record, self.op, self.n_ops, self.output, self.n_outputs, self.tensor,
                                self.dtype, self.total, self.offset) + self.data

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) < _CHUNK_HEAD.size:
            raise ProtocolError(f"TENSOR_CHUNK payload shorter than its {_CHUNK_HEAD.size}-byte head")
        head = _CHUNK_HEAD.unpack_from(payload)
        msg = cls(*(*head, bytes(payload[_CHUNK_HEAD.size:])))  # one star: mypy rejects a positional after *head
        if msg.op >= msg.n_ops or msg.output >= msg.n_outputs or msg.offset + len(msg.data) > msg.total:
            raise ProtocolError("TENSOR_CHUNK places its bytes outside the dump it describes")
        return msg


@dataclass(frozen=True)
class ResultPart(Message):
    """Bytes [offset, offset+len(data)) of one record's output record, with its timings.

    A device sends RESULT_PARTs, in offset order, instead of a RESULT when one output record
    and its RESULT overhead exceed max_payload: outputs of any size cross frames whatever
    the board's frame size. The host reassembles them (link.stream.ResultParts).
    """

    TYPE: ClassVar[int] = MsgType.RESULT_PART
    record: int
    offset: int
    cycles: int
    micros: int
    data: bytes

    def payload(self) -> bytes:
        return struct.pack("<IIII", self.record, self.offset, self.cycles, self.micros) + self.data

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) <= RESULT_PART_HEAD:
            raise ProtocolError(f"RESULT_PART payload shorter than its {RESULT_PART_HEAD}-byte head plus data")
        record, offset, cycles, micros = struct.unpack_from("<IIII", payload)
        return cls(record, offset, cycles, micros, bytes(payload[RESULT_PART_HEAD:]))


_TIMED_LOOP_REQ = struct.Struct("<II")
_TIMED_LOOP = struct.Struct("<IIQQ")


@dataclass(frozen=True)
class TimedLoopRequest(Message):
    """Run the last record back to back until the inferences add up to at least `min_ms`
    milliseconds (capability TIMED_LOOP); the last inference must have been of `record`.
    min_ms 0 runs it once."""

    TYPE: ClassVar[int] = MsgType.TIMED_LOOP_REQ
    record: int
    min_ms: int

    def payload(self) -> bytes:
        return _TIMED_LOOP_REQ.pack(self.record, self.min_ms)

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) != _TIMED_LOOP_REQ.size:
            raise ProtocolError(f"TIMED_LOOP_REQ payload must be {_TIMED_LOOP_REQ.size} bytes, got {len(payload)}")
        return cls(*_TIMED_LOOP_REQ.unpack(payload))


@dataclass(frozen=True)
class TimedLoop(Message):
    """A timed loop's answer: how many inferences ran and the sums of their timings (the
    board's cycles and microseconds, as RESULT reports one inference's)."""

    TYPE: ClassVar[int] = MsgType.TIMED_LOOP
    record: int
    iterations: int
    cycles: int
    micros: int

    def payload(self) -> bytes:
        return _TIMED_LOOP.pack(self.record, self.iterations, self.cycles, self.micros)

    @classmethod
    def parse(cls, payload: bytes):
        if len(payload) != TIMED_LOOP_BYTES:
            raise ProtocolError(f"TIMED_LOOP payload must be {TIMED_LOOP_BYTES} bytes, got {len(payload)}")
        return cls(*_TIMED_LOOP.unpack(payload))


def result_part_size(max_payload: int) -> int:
    """Output bytes per RESULT_PART frame for a device of this max_payload."""
    return max_payload - RESULT_PART_HEAD


def results_chunked(out_record: int, max_payload: int) -> bool:
    """Whether a device sends RESULT_PARTs: one record's RESULT would exceed max_payload."""
    return out_record + RESULT_OVERHEAD > max_payload


@dataclass(frozen=True)
class Unknown(Message):
    """A CRC-valid frame of a type this deploykit does not know: skipped, never an error.

    Forward compatibility (docs/protocol.md): a newer firmware may send message types an
    older host does not know; the host counts them and carries on.
    """

    type: int
    data: bytes

    def payload(self) -> bytes:
        return self.data


MESSAGES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (HelloRequest, Ping, Reset, Begin, Input, Hello, Pong, Ack, Nack,
                              ResultBatch, ErrorMsg, Log, OpTimingRequest, TensorDumpRequest, OpTimes,
                              TensorChunk, ResultPart, TimedLoopRequest, TimedLoop)
}
assert set(MESSAGES) == set(MsgType), "every spec.MsgType needs a message class"


def encode_message(msg: Message, seq: int) -> bytes:
    """Wire bytes of `msg` sent as frame number `seq`."""
    if isinstance(msg, Unknown):
        return encode_frame(msg.type, seq, msg.data)
    return encode_frame(msg.TYPE, seq, msg.payload())


def decode_message(frame: Frame, hello: Hello | None = None) -> Message:
    """Parse a frame's payload; RESULT needs the device's HELLO for its record size.

    Raises ProtocolError and nothing else for a payload that does not parse or a frame of
    another protocol version; a frame of an unknown type is an Unknown message.
    """
    if frame.version != PROTOCOL_VERSION:
        raise ProtocolError(f"frame of protocol version {frame.version}, this deploykit speaks "
                            f"{PROTOCOL_VERSION}")
    cls = MESSAGES.get(frame.type)
    if cls is None:
        return Unknown(frame.type, bytes(frame.payload))
    if cls is ResultBatch:
        if hello is None:
            raise ProtocolError("RESULT before HELLO: record size unknown")
        return ResultBatch.parse_with(frame.payload, hello.output_record_bytes)
    return cls.parse(frame.payload)


def _runs(cycles, micros):
    runs: list[list[int]] = []
    for cyc, us in zip(cycles, micros, strict=False):
        if runs and runs[-1][1] == cyc and runs[-1][2] == us:
            runs[-1][0] += 1
        else:
            runs.append([1, int(cyc), int(us)])
    return runs


def _varint(value: int) -> bytes:
    if value < 0:
        raise ProtocolError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, off: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if shift > 35:
            raise ProtocolError("varint longer than 5 bytes")
        byte = buf[off]
        off += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, off
        shift += 7
