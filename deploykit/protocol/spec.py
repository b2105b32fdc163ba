"""The one source of the wire protocol's numbers: version, message types, codes, sizes.

Everything else reads these tables: messages.py (Python encoding), the C header the
firmware includes (firmware_templates/src/dk_spec.h) and the tables in docs/protocol.md,
both written by `python -m deploykit.protocol.generate` (tests fail when they are stale),
the renderer, the manifest checks and the virtual board.
"""

from __future__ import annotations

import enum

import numpy as np

PROTOCOL_VERSION = 2


class MsgType(enum.IntEnum):
    """Frame types: host requests below 0x80, device messages from 0x80."""

    HELLO_REQ = 0x01
    PING = 0x02
    RESET = 0x03
    BEGIN = 0x04
    INPUT = 0x05
    OP_TIMING_REQ = 0x10      # diagnostics block 0x10..0x1F: capability OP_TIMING
    TENSOR_DUMP_REQ = 0x11    # capability TENSOR_DUMP
    TIMED_LOOP_REQ = 0x12     # capability TIMED_LOOP
    HELLO = 0x81
    PONG = 0x82
    ACK = 0x83
    NACK = 0x84
    RESULT = 0x85
    ERROR = 0x86
    LOG = 0x87
    OP_TIMES = 0x90          # diagnostics block 0x90..0x9F
    TENSOR_CHUNK = 0x91
    RESULT_PART = 0x88   # one record's outputs across frames, when they exceed one RESULT
    TIMED_LOOP = 0x92    # the answer to TIMED_LOOP_REQ

    @property
    def from_host(self) -> bool:
        return self < 0x80


# type -> payload layout, for the docs table
MESSAGE_PAYLOADS = {
    MsgType.HELLO_REQ: "empty",
    MsgType.PING: "any bytes (≤ max_payload)",
    MsgType.RESET: "empty",
    MsgType.BEGIN: "record:u32",
    MsgType.INPUT: "offset:u32, data",
    MsgType.OP_TIMING_REQ: "record:u32 (the record the device ran last)",
    MsgType.TENSOR_DUMP_REQ: "record:u32 (the record the device ran last), max_chunk:u16 (0: any)",
    MsgType.HELLO: "identity, limits, tensor specs (layout under HELLO)",
    MsgType.PONG: "the PING's bytes",
    MsgType.ACK: "next_offset:u32",
    MsgType.NACK: "expected_offset:u32",
    MsgType.RESULT: "first_record:u32, count:u16, outputs, timing runs",
    MsgType.ERROR: "code:u16, detail:u32, text (UTF-8)",
    MsgType.LOG: "text (UTF-8)",
    MsgType.OP_TIMES: "record:u32, first:u16, total:u16, n × (op_index:u16, op_code:u16, ticks:u32)",
    MsgType.TENSOR_CHUNK: ("record:u32, op:u16, n_ops:u16, output:u8, n_outputs:u8, tensor:u16, dtype:u8, "
                           "total:u32, offset:u32, data"),
    MsgType.RESULT_PART: "record:u32, offset:u32, cycles:u32, micros:u32, data (part of one output record)",
    MsgType.TIMED_LOOP_REQ: "record:u32 (the record the device ran last), min_ms:u32 (run at least this long)",
    MsgType.TIMED_LOOP: "record:u32, iterations:u32, cycles:u64, micros:u64 (sums over the loop's inferences)",
}


class ErrorCode(enum.IntEnum):
    """ERROR codes a device sends; each one's `detail` is in ERROR_DETAILS."""

    UNKNOWN_TYPE = 1
    BAD_PAYLOAD = 2
    INVOKE_FAILED = 3
    BAD_VERSION = 4
    OVERFLOW = 5
    NOT_RUN = 6


ERROR_DETAILS = {
    ErrorCode.UNKNOWN_TYPE: "the frame's seq",
    ErrorCode.BAD_PAYLOAD: "the frame's seq",
    ErrorCode.INVOKE_FAILED: "the record",
    ErrorCode.BAD_VERSION: "the frame's version",
    ErrorCode.OVERFLOW: "bytes needed (records exceed the compiled buffers)",
    ErrorCode.NOT_RUN: "the record asked about (not the record the device ran last)",
}


class DType(enum.IntEnum):
    """Tensor element types the protocol carries, by TfLiteType code (as TFLM numbers them).

    The member name is the manifest's dtype name and numpy's.
    """

    float32 = 1
    int32 = 2
    uint8 = 3
    int64 = 4
    bool = 6
    int16 = 7
    int8 = 9
    float16 = 10

    @property
    def numpy(self) -> np.dtype:
        """The little-endian numpy dtype of one element on the wire."""
        return np.dtype(self.name).newbyteorder("<")

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES[self]


DTYPE_SIZES = {DType.float32: 4, DType.int32: 4, DType.uint8: 1, DType.int64: 8, DType.bool: 1,
               DType.int16: 2, DType.int8: 1, DType.float16: 2}


class TimerKind(enum.IntEnum):
    """What the board times Invoke() with (HELLO timer)."""

    micros = 0
    dwt = 1
    ccount = 2
    mcycle = 3


TIMER_NOTES = {
    TimerKind.micros: "micros() (cycles derived from cpu_hz)",
    TimerKind.dwt: "DWT cycle counter (Cortex-M)",
    TimerKind.ccount: "Xtensa CCOUNT",
    TimerKind.mcycle: "RISC-V mcycle",
}


class Capability(enum.IntFlag):
    """HELLO capabilities (u32): optional requests a firmware was built with.

    A host asks a device for an optional feature only when its bit is set. The bits are
    reserved now so the features can arrive without another protocol version.
    SELECTIVE_ACK is a behaviour, not a request: a host may resend only the frame a NACK
    names (docs/protocol.md, "Selective repeat"); without it the host goes back N.
    """

    OP_TIMING = 1 << 0     # per-operator timings
    TENSOR_DUMP = 1 << 1   # intermediate tensor dumps
    TIMED_LOOP = 1 << 2    # a timed loop of repeated inferences on the device
    SELECTIVE_ACK = 1 << 3  # the device keeps INPUT frames that arrive after a gap (selective repeat)


CAPABILITY_NOTES = {
    Capability.OP_TIMING: "per-operator timing requests (OP_TIMING_REQ)",
    Capability.TENSOR_DUMP: "tensor dump requests (TENSOR_DUMP_REQ)",
    Capability.TIMED_LOOP: "timed-loop requests (TIMED_LOOP_REQ)",
    Capability.SELECTIVE_ACK: ("keeps INPUT frames after a gap (up to max_payload data bytes): "
                               "the host resends only the missing frame"),
}

HELLO_FLAG_SIMULATED = 0x01   # HELLO flags bit 0: timings come from a model, not a board
FIRMWARE_ID_BYTES = 16        # HELLO firmware_id: all zeros = none
MODEL_SHA256_BYTES = 32
MAX_DIMS = 6                  # dims per tensor spec
MAX_DIM = 0xFFFF              # each dim is a u16

FRAME_HEADER = 4              # version:u8 type:u8 seq:u16
FRAME_CRC = 4                 # CRC-32
RESULT_HEAD = 6               # first_record:u32 count:u16
RESULT_MAX_RUN = 13           # one timing run: run varint (≤ 3 bytes for a u16 count) + two u32 varints
RESULT_OVERHEAD = RESULT_HEAD + RESULT_MAX_RUN  # a RESULT of one record needs this plus its outputs
OP_TIMES_HEAD = 8             # record:u32 first:u16 total:u16
OP_TIME_ENTRY = 8             # op_index:u16 op_code:u16 ticks:u32
TENSOR_CHUNK_HEAD = 21        # record op n_ops output n_outputs tensor dtype total offset
RESULT_PART_HEAD = 16         # record:u32 offset:u32 cycles:u32 micros:u32
TIMED_LOOP_BYTES = 24         # record:u32 iterations:u32 cycles:u64 micros:u64
REPEAT_RESULTS = 16           # SELECTIVE_ACK: after a damaged chunk the next this many RESULTs go out twice

# name -> (value, what it is): the sizes the C header and the docs list
SIZES = {
    "FRAME_HEADER": (FRAME_HEADER, "version:u8, type:u8, seq:u16"),
    "FRAME_CRC": (FRAME_CRC, "CRC-32 after the payload"),
    "FIRMWARE_ID_BYTES": (FIRMWARE_ID_BYTES, "HELLO firmware_id (all zeros: none)"),
    "MODEL_SHA256_BYTES": (MODEL_SHA256_BYTES, "HELLO model_sha256"),
    "MAX_DIMS": (MAX_DIMS, "dims of one tensor spec"),
    "RESULT_HEAD": (RESULT_HEAD, "RESULT first_record:u32, count:u16"),
    "RESULT_MAX_RUN": (RESULT_MAX_RUN, "one RESULT timing run, worst case"),
    "RESULT_OVERHEAD": (RESULT_OVERHEAD, "RESULT head + one timing run: larger records go as RESULT_PARTs"),
    "OP_TIMES_HEAD": (OP_TIMES_HEAD, "OP_TIMES record:u32, first:u16, total:u16"),
    "OP_TIME_ENTRY": (OP_TIME_ENTRY, "one OP_TIMES entry: op_index:u16, op_code:u16, ticks:u32"),
    "TENSOR_CHUNK_HEAD": (TENSOR_CHUNK_HEAD, "TENSOR_CHUNK fields before its data"),
    "RESULT_PART_HEAD": (RESULT_PART_HEAD, "RESULT_PART record, offset, cycles, micros"),
    "TIMED_LOOP_BYTES": (TIMED_LOOP_BYTES, "TIMED_LOOP record, iterations, cycles:u64, micros:u64"),
    "REPEAT_RESULTS": (REPEAT_RESULTS, "a count, not bytes: RESULT frames sent twice after a damaged chunk "
                                       "(SELECTIVE_ACK)"),
}
