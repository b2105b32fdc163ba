// deploykit wire protocol, device side (the version is in dk_spec.h). Normative spec: docs/protocol.md.
//
// Portable C++11: no Arduino, no TFLM, no heap, no STL containers. The only platform code
// is the Io adapter (read a byte, write bytes, optionally reboot) and the InferFn that runs
// one inference and times it. Buffers are sized at compile time by the DK_* macros below;
// an optional "dk_config.h" next to this file (or -D build flags) overrides them.
//
// Frames: 0x00 || COBS(version u8, type u8, seq u16, payload, CRC-32 u32) || 0x00, all
// little-endian. The Python twin is deploykit/protocol/; both are checked against
// deploykit/protocol/vectors.json.
#ifndef DK_PROTOCOL_H_
#define DK_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#include "dk_spec.h"  // generated from deploykit/protocol/spec.py: version, types, codes, sizes

#if defined(__has_include)
#if __has_include("dk_config.h")
#include "dk_config.h"
#endif
#endif

// Largest frame payload the device accepts (announced in HELLO); RESULT, LOG and ERROR
// frames it sends stay within it too.
#ifndef DK_MAX_PAYLOAD
#define DK_MAX_PAYLOAD 256
#endif
// Largest input record (all input tensors of one sample) the device can buffer.
#ifndef DK_MAX_INPUT_BYTES
#define DK_MAX_INPUT_BYTES 256
#endif
// Largest output record. One that fits a RESULT with its head and one timing run goes in
// RESULTs (batched); a larger one goes as RESULT_PART frames from a buffer of this size.
#ifndef DK_MAX_OUTPUT_BYTES
#define DK_MAX_OUTPUT_BYTES 128
#endif
// HELLO capability bits (dk::Capability) of the optional requests this build carries.
#ifndef DK_CAPABILITIES
#define DK_CAPABILITIES 0u
#endif
// Wire bytes the board's serial driver buffers while an inference runs (HELLO rx_window).
#ifndef DK_RX_WINDOW
#define DK_RX_WINDOW 64
#endif
// Selective repeat (HELLO capability SELECTIVE_ACK): keep up to DK_MAX_PAYLOAD bytes of INPUT
// that arrive after a gap, so the host resends only the lost frame, and NACK a damaged
// chunk as a gap (then its next kRepeatResults RESULTs go out twice). 0 saves that buffer;
// the device then drops such frames and hosts go back N.
#ifndef DK_SELECTIVE_ACK
#define DK_SELECTIVE_ACK 1
#endif

namespace dk {

static_assert(DK_MAX_PAYLOAD >= 20 && DK_MAX_PAYLOAD <= 65535, "DK_MAX_PAYLOAD must be 20..65535");
static_assert(DK_MAX_PAYLOAD > kResultPartHead, "DK_MAX_PAYLOAD must exceed the RESULT_PART head");
// Output records too large for one RESULT cross frames as RESULT_PARTs from their own buffer.
const bool kResultsChunked = DK_MAX_OUTPUT_BYTES + kResultOverhead > DK_MAX_PAYLOAD;
static_assert(DK_MAX_INPUT_BYTES >= 1, "DK_MAX_INPUT_BYTES must be positive");
static_assert(DK_RX_WINDOW <= 65535, "DK_RX_WINDOW is a u16 on the wire");

// dtype is a TfLiteType code the protocol carries (dk_spec.h DtypeSize).
struct TensorSpec {
  uint8_t dtype;
  uint8_t ndims;
  uint16_t dims[kMaxDims];
  float scale;
  int32_t zero_point;
};

// Everything HELLO announces. The pointers must stay valid as long as the Device lives.
struct DeviceInfo {
  const char* board_id;
  const uint8_t* model_sha256;  // 32 bytes
  uint32_t cpu_hz;
  TimerKind timer;
  uint32_t arena_configured;
  uint32_t arena_used;
  bool simulated;
  const TensorSpec* inputs;
  uint8_t n_inputs;
  const TensorSpec* outputs;
  uint8_t n_outputs;
  const uint8_t* firmware_id;   // kFirmwareIdBytes (render's dk_firmware_id.h), or null: none
  uint32_t capabilities;        // dk::Capability bits (DK_CAPABILITIES)
};

// The board adapter. read_byte returns 0..255, or -1 when nothing is buffered (never
// blocks). reboot may be null: then RESET restarts the protocol state in place (as
// Begin()). If reboot returns (a host adapter), Poll() stops there; the hook is expected
// to have called Begin() again.
struct Io {
  int (*read_byte)(void* ctx);
  void (*write)(void* ctx, const uint8_t* data, size_t len);
  void* ctx;
  void (*reboot)(void* ctx);
};

// Runs one inference: input = one record (in_len bytes), output = one output record
// (out_len bytes). Reports the time around Invoke() both as CPU cycles and microseconds
// (the runner derives the one its board's clock does not count). Returns 0 on success.
typedef int (*InferFn)(void* ctx, const uint8_t* input, size_t in_len, uint8_t* output,
                       size_t out_len, uint32_t* cycles, uint32_t* micros);

// CRC-32 (IEEE, reflected, zlib.crc32). Start with crc = 0 and chain calls.
uint32_t Crc32(uint32_t crc, const uint8_t* data, size_t len);

// Bytes of one tensor / one record of tensors; 0 for an unknown dtype.
size_t TensorBytes(const TensorSpec& spec);
size_t RecordBytes(const TensorSpec* specs, uint8_t n);

// Bytes of the largest legal COBS chunk for a payload limit (Python max_encoded_size).
constexpr size_t MaxEncodedSize(size_t max_payload) {
  return (max_payload + 8) + (max_payload + 8) / 254 + 1;
}

enum class FrameStatus : uint8_t { kNone, kFrame, kCobsError, kShort, kCrcError, kOverflow };

// Turns a byte stream into frames; a bad chunk is reported once and the next 0x00 starts
// afresh. Decodes COBS as bytes arrive, so it needs one body buffer and no staging copy.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_payload = DK_MAX_PAYLOAD);
  FrameStatus Feed(uint8_t byte);
  void Reset();
  uint8_t version() const { return body_[0]; }
  uint8_t type() const { return body_[1]; }
  uint16_t seq() const { return static_cast<uint16_t>(body_[2] | (body_[3] << 8)); }
  const uint8_t* payload() const { return body_ + 4; }
  size_t payload_len() const { return frame_len_ - 8; }

 private:
  FrameStatus Finish();
  static const size_t kCapacity = MaxEncodedSize(DK_MAX_PAYLOAD) - 1;
  uint8_t body_[kCapacity];
  size_t limit_;
  size_t len_;
  size_t frame_len_;  // body length of the last complete chunk
  size_t encoded_;
  uint8_t code_;
  uint8_t left_;
  bool zero_pending_;
  bool overflow_;
};

// Writes one frame through Io: COBS-encodes and CRCs as bytes are put, with one 255-byte
// block buffer, so no message is ever assembled whole in RAM.
class FrameWriter {
 public:
  explicit FrameWriter(const Io& io) : io_(io), crc_(0), n_(0), final_zero_(true), busy_(false) {}
  void Start(uint8_t type, uint16_t seq);
  void Put(uint8_t byte);
  void Put(const uint8_t* data, size_t len);
  void PutU16(uint16_t v);
  void PutU32(uint32_t v);
  void PutVarint(uint32_t v);
  void Finish();
  bool busy() const { return busy_; }

 private:
  void Raw(uint8_t byte);
  void FlushBlock();
  Io io_;
  uint32_t crc_;
  uint8_t block_[255];  // block_[0] is the COBS code byte
  uint8_t n_;
  bool final_zero_;
  bool busy_;
};

size_t VarintSize(uint32_t v);

// Outputs of consecutive records with run-length encoded timings, as one RESULT payload
// of at most `capacity` bytes: outputs grow from the front of the buffer, encoded timing
// runs sit at its back, the newest run stays unencoded until the next one starts.
class ResultBatch {
 public:
  void Reset(uint32_t first_record, size_t out_record, size_t capacity = DK_MAX_PAYLOAD);
  bool HasRoom() const;          // one more record surely fits
  uint8_t* Slot() { return buf_ + count_ * out_record_; }  // where the next output goes
  void Commit(uint32_t cycles, uint32_t micros);
  void Emit(FrameWriter& w, uint16_t seq) const;
  uint16_t count() const { return count_; }
  uint32_t next_record() const { return first_ + count_; }
  size_t PayloadSize() const;

 private:
  void CloseRun();
  uint8_t buf_[DK_MAX_PAYLOAD];
  size_t capacity_;
  size_t out_record_;
  size_t runs_len_;  // encoded closed runs at buf_[capacity_ - runs_len_, capacity_)
  uint32_t first_;
  uint16_t count_;
  uint16_t run_;
  uint32_t run_cycles_;
  uint32_t run_micros_;
};

// Message writers: Device sends through them; the shared-vector tests call them directly.
// Text is cut to what fits DK_MAX_PAYLOAD after `head`, at a UTF-8 boundary.
void WriteHello(FrameWriter& w, uint16_t seq, const DeviceInfo& info, uint16_t max_payload,
                uint16_t rx_window);
void WriteU32(FrameWriter& w, uint8_t type, uint16_t seq, uint32_t value);
void WriteText(FrameWriter& w, uint8_t type, uint16_t seq, const uint8_t* head, size_t head_len,
               const char* text);
void WriteError(FrameWriter& w, uint16_t seq, uint16_t code, uint32_t detail, const char* text);
void WriteResultPart(FrameWriter& w, uint16_t seq, uint32_t record, uint32_t offset, uint32_t cycles,
                     uint32_t micros, const uint8_t* data, size_t len);

// Diagnostics (render --diagnostics, capabilities OP_TIMING / TENSOR_DUMP): the firmware
// keeps what its last inference left behind (a profiler's ticks per operator, TFLM keeping
// every intermediate tensor) and the Device streams it on request.
struct OpTime {
  uint16_t index;    // operator index in subgraph 0
  uint16_t op_code;  // TFLite builtin operator code
  uint32_t ticks;    // board timer ticks (cycles on a cycle-counter board, else microseconds)
};

struct TensorView {
  uint16_t tensor;       // tensor index in subgraph 0
  uint8_t dtype;         // TfLiteType code
  const uint8_t* data;
  uint32_t bytes;
};

// Hooks into the firmware; any may be null when its capability is not built in.
struct Diagnostics {
  uint16_t (*op_count)(void* ctx);                                   // operators of subgraph 0
  bool (*op_time)(void* ctx, uint16_t op, OpTime* out);              // of the last inference
  uint8_t (*op_outputs)(void* ctx, uint16_t op);                     // outputs of operator op
  bool (*op_output)(void* ctx, uint16_t op, uint8_t k, TensorView* out);  // of the last inference
  void* ctx;
};

// TENSOR_CHUNK fields before its data.
struct ChunkHead {
  uint32_t record;
  uint16_t op;
  uint16_t n_ops;
  uint8_t output;
  uint8_t n_outputs;
  uint16_t tensor;
  uint8_t dtype;
  uint32_t total;
  uint32_t offset;
};

// OP_TIMES: Start, then one PutOpTime per entry, then w.Finish(); WriteOpTimes does all three.
void StartOpTimes(FrameWriter& w, uint16_t seq, uint32_t record, uint16_t first, uint16_t total);
void PutOpTime(FrameWriter& w, const OpTime& t);
void WriteOpTimes(FrameWriter& w, uint16_t seq, uint32_t record, uint16_t first, uint16_t total,
                  const OpTime* entries, size_t n);
void WriteTensorChunk(FrameWriter& w, uint16_t seq, const ChunkHead& head, const uint8_t* data,
                      size_t len);

// TIMED_LOOP (capability TIMED_LOOP): how many inferences a timed loop ran and the sums of
// their cycles and microseconds (u64: ten seconds of cycles overflow a u32).
void WriteTimedLoop(FrameWriter& w, uint16_t seq, uint32_t record, uint32_t iterations, uint64_t cycles,
                    uint64_t micros);

struct Stats {
  uint32_t frames;          // CRC-valid frames received
  uint32_t cobs_errors;
  uint32_t short_errors;
  uint32_t crc_errors;
  uint32_t overflow_errors;
  uint32_t frames_sent;
  uint32_t logs_dropped;    // Log() while another frame was being written
};

class Device {
 public:
  Device(const DeviceInfo& info, Io io, InferFn infer, void* infer_ctx);
  void Begin();                 // (re)start the protocol after boot and send HELLO
  void Poll();                  // drain available bytes, handle frames, send replies
  void Log(const char* text);   // LOG frame (truncated to DK_MAX_PAYLOAD at a UTF-8 boundary)
  void SetArenaUsed(uint32_t bytes);
  void SetRxWindow(uint16_t bytes);  // default DK_RX_WINDOW
  void SetDiagnostics(const Diagnostics* diag);  // answers OP_TIMING_REQ / TENSOR_DUMP_REQ
  // TIMED_LOOP_REQ needs no hook: the core reruns the last record through InferFn.
  const Stats& stats() const { return stats_; }

 private:
  void Handle();
  void HandleBegin(const uint8_t* p, size_t len);
  void HandleInput(const uint8_t* p, size_t len);
  void Hold(uint64_t offset, const uint8_t* data, size_t len);
  void OnDamaged();
  void Consume(const uint8_t* data, size_t len);
  void RunRecord();
  void FlushResults();
  void RunRecordInParts();
  bool CheckConfig();
  void SendHello();
  bool CanAnswer(uint32_t capability, uint32_t record);
  void SendOpTimes(uint32_t record);
  void SendTensorDump(uint32_t record, uint16_t max_chunk);
  void RunTimedLoop(uint32_t record, uint32_t min_ms);
  void SendU32(uint8_t type, uint32_t value);
  void SendError(uint16_t code, uint32_t detail, const char* text);
  uint16_t NextSeq() { return seq_++; }

  DeviceInfo info_;
  Io io_;
  InferFn infer_;
  void* infer_ctx_;
  FrameDecoder rx_;
  FrameWriter tx_;
  ResultBatch batch_;
  Stats stats_;
  size_t in_record_;
  size_t out_record_;
  uint32_t expected_;
  uint32_t record_;        // record being filled in rec_
  size_t rec_fill_;
  uint32_t nacked_;        // expected value of the last NACK
  bool nack_valid_;
  uint16_t seq_;
  uint16_t rx_window_;
  uint32_t generation_;    // bumped by Begin(), so Poll() notices a reboot under it
  const Diagnostics* diag_;
  uint32_t last_record_;   // record of the last successful inference
  bool last_valid_;
  uint8_t rec_[DK_MAX_INPUT_BYTES];
  // Stream bytes [held_at_, held_at_ + held_len_) received after a gap (selective repeat).
  uint8_t held_[DK_SELECTIVE_ACK ? DK_MAX_PAYLOAD : 1];
  uint32_t held_at_;
  size_t held_len_;
  size_t repeat_results_;  // RESULTs still sent twice since the last damaged chunk
  uint8_t big_out_[kResultsChunked ? DK_MAX_OUTPUT_BYTES : 1];  // an output record sent in parts
};

}  // namespace dk

#endif  // DK_PROTOCOL_H_
