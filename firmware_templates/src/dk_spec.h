// Generated from deploykit/protocol/spec.py by `python -m deploykit.protocol.generate`.
// Do not edit: change spec.py and regenerate (a test fails while this file is stale).
#ifndef DK_SPEC_H_
#define DK_SPEC_H_

#include <stddef.h>
#include <stdint.h>

namespace dk {

const uint8_t kProtocolVersion = 2;

// Frame types: host requests below 0x80, device messages from 0x80.
enum MsgType : uint8_t {
  kHelloReq = 0x01,  // empty
  kPing = 0x02,  // any bytes (<= max_payload)
  kReset = 0x03,  // empty
  kBegin = 0x04,  // record:u32
  kInput = 0x05,  // offset:u32, data
  kOpTimingReq = 0x10,  // record:u32 (the record the device ran last)
  kTensorDumpReq = 0x11,  // record:u32 (the record the device ran last), max_chunk:u16 (0: any)
  kTimedLoopReq = 0x12,  // record:u32 (the record the device ran last), min_ms:u32 (run at least this long)
  kHello = 0x81,  // identity, limits, tensor specs (layout under HELLO)
  kPong = 0x82,  // the PING's bytes
  kAck = 0x83,  // next_offset:u32
  kNack = 0x84,  // expected_offset:u32
  kResult = 0x85,  // first_record:u32, count:u16, outputs, timing runs
  kError = 0x86,  // code:u16, detail:u32, text (UTF-8)
  kLog = 0x87,  // text (UTF-8)
  kOpTimes = 0x90,  // record:u32, first:u16, total:u16, n × (op_index:u16, op_code:u16, ticks:u32)
  kTensorChunk = 0x91,  // record:u32, op:u16, n_ops:u16, output:u8, n_outputs:u8, tensor:u16, dtype:u8, total:u32, offset:u32, data
  kResultPart = 0x88,  // record:u32, offset:u32, cycles:u32, micros:u32, data (part of one output record)
  kTimedLoop = 0x92,  // record:u32, iterations:u32, cycles:u64, micros:u64 (sums over the loop's inferences)
};

enum ErrorCode : uint16_t {
  kUnknownType = 1,  // detail = the frame's seq
  kBadPayload = 2,  // detail = the frame's seq
  kInvokeFailed = 3,  // detail = the record
  kBadVersion = 4,  // detail = the frame's version
  kOverflow = 5,  // detail = bytes needed (records exceed the compiled buffers)
  kNotRun = 6,  // detail = the record asked about (not the record the device ran last)
};

enum class TimerKind : uint8_t {
  kMicros = 0,  // micros() (cycles derived from cpu_hz)
  kDwt = 1,  // DWT cycle counter (Cortex-M)
  kCcount = 2,  // Xtensa CCOUNT
  kMcycle = 3,  // RISC-V mcycle
};

// HELLO capabilities (u32): optional requests this firmware was built with.
enum Capability : uint32_t {
  kCapOpTiming = 1u << 0,  // per-operator timing requests (OP_TIMING_REQ)
  kCapTensorDump = 1u << 1,  // tensor dump requests (TENSOR_DUMP_REQ)
  kCapTimedLoop = 1u << 2,  // timed-loop requests (TIMED_LOOP_REQ)
  kCapSelectiveAck = 1u << 3,  // keeps INPUT frames after a gap (up to max_payload data bytes): the host resends only the missing frame
};

const uint8_t kHelloFlagSimulated = 0x01;
const size_t kFrameHeader = 4;  // version:u8, type:u8, seq:u16
const size_t kFrameCrc = 4;  // CRC-32 after the payload
const size_t kFirmwareIdBytes = 16;  // HELLO firmware_id (all zeros: none)
const size_t kModelSha256Bytes = 32;  // HELLO model_sha256
const size_t kMaxDims = 6;  // dims of one tensor spec
const size_t kResultHead = 6;  // RESULT first_record:u32, count:u16
const size_t kResultMaxRun = 13;  // one RESULT timing run, worst case
const size_t kResultOverhead = 19;  // RESULT head + one timing run: larger records go as RESULT_PARTs
const size_t kOpTimesHead = 8;  // OP_TIMES record:u32, first:u16, total:u16
const size_t kOpTimeEntry = 8;  // one OP_TIMES entry: op_index:u16, op_code:u16, ticks:u32
const size_t kTensorChunkHead = 21;  // TENSOR_CHUNK fields before its data
const size_t kResultPartHead = 16;  // RESULT_PART record, offset, cycles, micros
const size_t kTimedLoopBytes = 24;  // TIMED_LOOP record, iterations, cycles:u64, micros:u64
const size_t kRepeatResults = 16;  // a count, not bytes: RESULT frames sent twice after a damaged chunk (SELECTIVE_ACK)

// Bytes of one element of a TfLiteType code; 0 for a type the protocol does not carry.
inline size_t DtypeSize(uint8_t dtype) {
  switch (dtype) {
    case 1: return 4;  // float32
    case 2: return 4;  // int32
    case 3: return 1;  // uint8
    case 4: return 8;  // int64
    case 6: return 1;  // bool
    case 7: return 2;  // int16
    case 9: return 1;  // int8
    case 10: return 2;  // float16
    default: return 0;
  }
}

}  // namespace dk

#endif  // DK_SPEC_H_
