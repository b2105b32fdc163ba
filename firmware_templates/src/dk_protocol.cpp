// deploykit wire protocol, device side (see dk_protocol.h, dk_spec.h and docs/protocol.md).
#include "dk_protocol.h"

#include <string.h>

namespace dk {

namespace {

const size_t kFrameOverhead = kFrameHeader + kFrameCrc;

// Half-byte table: 64 bytes of flash instead of 1 KiB, 8 lookups per byte.
const uint32_t kCrcNibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t Le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Length of text cut to at most max bytes without splitting a UTF-8 sequence.
size_t Utf8Prefix(const char* text, size_t max) {
  size_t len = strlen(text);
  if (len <= max) return len;
  while (max > 0 && (static_cast<uint8_t>(text[max]) & 0xC0) == 0x80) --max;
  return max;
}

}  // namespace

uint32_t Crc32(uint32_t crc, const uint8_t* data, size_t len) {
  crc = ~crc;
  for (size_t i = 0; i < len; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ kCrcNibble[crc & 0x0F];
    crc = (crc >> 4) ^ kCrcNibble[crc & 0x0F];
  }
  return ~crc;
}

size_t TensorBytes(const TensorSpec& spec) {
  size_t n = DtypeSize(spec.dtype);
  for (uint8_t i = 0; i < spec.ndims && i < kMaxDims; ++i) n *= spec.dims[i];
  return spec.ndims > kMaxDims ? 0 : n;
}

size_t RecordBytes(const TensorSpec* specs, uint8_t n) {
  size_t total = 0;
  for (uint8_t i = 0; i < n; ++i) {
    size_t bytes = TensorBytes(specs[i]);
    if (bytes == 0) return 0;
    total += bytes;
  }
  return total;
}

size_t VarintSize(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) { v >>= 7; ++n; }
  return n;
}

// ---------------------------------------------------------------- FrameDecoder

FrameDecoder::FrameDecoder(size_t max_payload) : frame_len_(0) {
  limit_ = MaxEncodedSize(max_payload < DK_MAX_PAYLOAD ? max_payload : DK_MAX_PAYLOAD);
  Reset();
}

void FrameDecoder::Reset() {
  len_ = 0;
  encoded_ = 0;
  code_ = 0;
  left_ = 0;
  zero_pending_ = false;
  overflow_ = false;
}

FrameStatus FrameDecoder::Feed(uint8_t byte) {
  if (byte == 0) return Finish();
  if (overflow_) return FrameStatus::kNone;
  if (++encoded_ > limit_) {  // like Python: a chunk longer than the largest legal frame
    overflow_ = true;
    return FrameStatus::kNone;
  }
  if (left_ == 0) {  // a code byte starts the next block
    if (zero_pending_) body_[len_++] = 0;
    code_ = byte;
    left_ = static_cast<uint8_t>(byte - 1);
  } else {
    body_[len_++] = byte;
    --left_;
  }
  zero_pending_ = (left_ == 0 && code_ < 0xFF);
  return FrameStatus::kNone;
}

FrameStatus FrameDecoder::Finish() {
  bool empty = encoded_ == 0, overflow = overflow_, truncated = left_ != 0;
  size_t len = len_;
  Reset();
  frame_len_ = len;  // the body stays readable until the next byte arrives
  if (overflow) return FrameStatus::kOverflow;
  if (empty) return FrameStatus::kNone;
  if (truncated) return FrameStatus::kCobsError;
  if (len < kFrameOverhead) return FrameStatus::kShort;
  uint32_t crc = Le32(body_ + len - 4);
  if (Crc32(0, body_, len - 4) != crc) return FrameStatus::kCrcError;
  return FrameStatus::kFrame;
}

// ---------------------------------------------------------------- FrameWriter

void FrameWriter::Start(uint8_t type, uint16_t seq) {
  busy_ = true;
  crc_ = 0;
  n_ = 0;
  final_zero_ = true;
  const uint8_t delimiter = 0;
  io_.write(io_.ctx, &delimiter, 1);
  Put(kProtocolVersion);
  Put(type);
  PutU16(seq);
}

void FrameWriter::Raw(uint8_t byte) {
  // COBS as Python's cobs.encode: a zero ends a block; 254 data bytes fill one (code 0xFF,
  // no implied zero); the last block is written only if it holds data or follows a zero.
  if (byte == 0) {
    block_[0] = static_cast<uint8_t>(n_ + 1);
    FlushBlock();
    final_zero_ = true;
    return;
  }
  block_[1 + n_++] = byte;
  if (n_ == 254) {
    block_[0] = 0xFF;
    FlushBlock();
    final_zero_ = false;
  }
}

void FrameWriter::FlushBlock() {
  io_.write(io_.ctx, block_, static_cast<size_t>(n_) + 1);
  n_ = 0;
}

void FrameWriter::Put(uint8_t byte) {
  crc_ = Crc32(crc_, &byte, 1);
  Raw(byte);
}

void FrameWriter::Put(const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) Put(data[i]);
}

void FrameWriter::PutU16(uint16_t v) {
  Put(static_cast<uint8_t>(v));
  Put(static_cast<uint8_t>(v >> 8));
}

void FrameWriter::PutU32(uint32_t v) {
  for (int i = 0; i < 4; ++i) Put(static_cast<uint8_t>(v >> (8 * i)));
}

void FrameWriter::PutVarint(uint32_t v) {
  while (v >= 0x80) {
    Put(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  Put(static_cast<uint8_t>(v));
}

void FrameWriter::Finish() {
  uint32_t crc = crc_;
  for (int i = 0; i < 4; ++i) Raw(static_cast<uint8_t>(crc >> (8 * i)));
  if (n_ > 0 || final_zero_) {
    block_[0] = static_cast<uint8_t>(n_ + 1);
    FlushBlock();
  }
  const uint8_t delimiter = 0;
  io_.write(io_.ctx, &delimiter, 1);
  busy_ = false;
}

// ---------------------------------------------------------------- ResultBatch

void ResultBatch::Reset(uint32_t first_record, size_t out_record, size_t capacity) {
  capacity_ = capacity < DK_MAX_PAYLOAD ? capacity : DK_MAX_PAYLOAD;
  out_record_ = out_record;
  runs_len_ = 0;
  first_ = first_record;
  count_ = 0;
  run_ = 0;
  run_cycles_ = 0;
  run_micros_ = 0;
}

size_t ResultBatch::PayloadSize() const {
  size_t open = run_ ? VarintSize(run_) + VarintSize(run_cycles_) + VarintSize(run_micros_) : 0;
  return kResultHead + count_ * out_record_ + runs_len_ + open;
}

bool ResultBatch::HasRoom() const {
  return count_ < 0xFFFF && PayloadSize() + out_record_ + kResultMaxRun <= capacity_;
}

void ResultBatch::CloseRun() {
  uint8_t tmp[kResultMaxRun];
  size_t n = 0;
  uint32_t values[3] = {run_, run_cycles_, run_micros_};
  for (int k = 0; k < 3; ++k) {
    uint32_t v = values[k];
    while (v >= 0x80) { tmp[n++] = static_cast<uint8_t>(v | 0x80); v >>= 7; }
    tmp[n++] = static_cast<uint8_t>(v);
  }
  uint8_t* runs = buf_ + capacity_ - runs_len_;
  memmove(runs - n, runs, runs_len_);
  memcpy(buf_ + capacity_ - n, tmp, n);
  runs_len_ += n;
  run_ = 0;
}

void ResultBatch::Commit(uint32_t cycles, uint32_t micros) {
  if (run_ && (cycles != run_cycles_ || micros != run_micros_)) CloseRun();
  if (!run_) {
    run_cycles_ = cycles;
    run_micros_ = micros;
  }
  ++run_;
  ++count_;
}

void ResultBatch::Emit(FrameWriter& w, uint16_t seq) const {
  w.Start(kResult, seq);
  w.PutU32(first_);
  w.PutU16(count_);
  w.Put(buf_, count_ * out_record_);
  w.Put(buf_ + capacity_ - runs_len_, runs_len_);
  if (run_) {
    w.PutVarint(run_);
    w.PutVarint(run_cycles_);
    w.PutVarint(run_micros_);
  }
  w.Finish();
}

// ---------------------------------------------------------------- messages

namespace {

void PutSpecs(FrameWriter& w, const TensorSpec* specs, uint8_t n) {
  w.Put(n);
  for (uint8_t i = 0; i < n; ++i) {
    const TensorSpec& s = specs[i];
    uint8_t ndims = s.ndims > kMaxDims ? static_cast<uint8_t>(kMaxDims) : s.ndims;
    w.Put(s.dtype);
    w.Put(ndims);
    for (uint8_t d = 0; d < ndims; ++d) w.PutU16(s.dims[d]);
    uint32_t scale_bits;
    memcpy(&scale_bits, &s.scale, 4);
    w.PutU32(scale_bits);
    w.PutU32(static_cast<uint32_t>(s.zero_point));
  }
}

}  // namespace

void WriteHello(FrameWriter& w, uint16_t seq, const DeviceInfo& info, uint16_t max_payload,
                uint16_t rx_window) {
  w.Start(kHello, seq);
  w.Put(kProtocolVersion);
  w.Put(info.simulated ? kHelloFlagSimulated : 0);
  w.PutU16(max_payload);
  w.PutU16(rx_window);
  w.Put(static_cast<uint8_t>(info.timer));
  w.PutU32(info.cpu_hz);
  w.PutU32(info.arena_configured);
  w.PutU32(info.arena_used);
  w.Put(info.model_sha256, kModelSha256Bytes);
  for (size_t i = 0; i < kFirmwareIdBytes; ++i) w.Put(info.firmware_id ? info.firmware_id[i] : 0);
  w.PutU32(info.capabilities);
  size_t board_len = Utf8Prefix(info.board_id, 255);
  w.Put(static_cast<uint8_t>(board_len));
  w.Put(reinterpret_cast<const uint8_t*>(info.board_id), board_len);
  PutSpecs(w, info.inputs, info.n_inputs);
  PutSpecs(w, info.outputs, info.n_outputs);
  w.Finish();
}

void WriteU32(FrameWriter& w, uint8_t type, uint16_t seq, uint32_t value) {
  w.Start(type, seq);
  w.PutU32(value);
  w.Finish();
}

void WriteText(FrameWriter& w, uint8_t type, uint16_t seq, const uint8_t* head, size_t head_len,
               const char* text) {
  w.Start(type, seq);
  w.Put(head, head_len);
  size_t room = head_len < DK_MAX_PAYLOAD ? DK_MAX_PAYLOAD - head_len : 0;
  w.Put(reinterpret_cast<const uint8_t*>(text), Utf8Prefix(text, room));
  w.Finish();
}

void WriteError(FrameWriter& w, uint16_t seq, uint16_t code, uint32_t detail, const char* text) {
  uint8_t head[6] = {static_cast<uint8_t>(code), static_cast<uint8_t>(code >> 8), 0, 0, 0, 0};
  for (int i = 0; i < 4; ++i) head[2 + i] = static_cast<uint8_t>(detail >> (8 * i));
  WriteText(w, kError, seq, head, sizeof(head), text);
}

void StartOpTimes(FrameWriter& w, uint16_t seq, uint32_t record, uint16_t first, uint16_t total) {
  w.Start(kOpTimes, seq);
  w.PutU32(record);
  w.PutU16(first);
  w.PutU16(total);
}

void PutOpTime(FrameWriter& w, const OpTime& t) {
  w.PutU16(t.index);
  w.PutU16(t.op_code);
  w.PutU32(t.ticks);
}

void WriteOpTimes(FrameWriter& w, uint16_t seq, uint32_t record, uint16_t first, uint16_t total,
                  const OpTime* entries, size_t n) {
  StartOpTimes(w, seq, record, first, total);
  for (size_t i = 0; i < n; ++i) PutOpTime(w, entries[i]);
  w.Finish();
}

void WriteTensorChunk(FrameWriter& w, uint16_t seq, const ChunkHead& h, const uint8_t* data,
                      size_t len) {
  w.Start(kTensorChunk, seq);
  w.PutU32(h.record);
  w.PutU16(h.op);
  w.PutU16(h.n_ops);
  w.Put(h.output);
  w.Put(h.n_outputs);
  w.PutU16(h.tensor);
  w.Put(h.dtype);
  w.PutU32(h.total);
  w.PutU32(h.offset);
  w.Put(data, len);
  w.Finish();
}

void WriteResultPart(FrameWriter& w, uint16_t seq, uint32_t record, uint32_t offset, uint32_t cycles,
                     uint32_t micros, const uint8_t* data, size_t len) {
  w.Start(kResultPart, seq);
  w.PutU32(record);
  w.PutU32(offset);
  w.PutU32(cycles);
  w.PutU32(micros);
  w.Put(data, len);
  w.Finish();
}

void WriteTimedLoop(FrameWriter& w, uint16_t seq, uint32_t record, uint32_t iterations, uint64_t cycles,
                    uint64_t micros) {
  w.Start(kTimedLoop, seq);
  w.PutU32(record);
  w.PutU32(iterations);
  w.PutU32(static_cast<uint32_t>(cycles));
  w.PutU32(static_cast<uint32_t>(cycles >> 32));
  w.PutU32(static_cast<uint32_t>(micros));
  w.PutU32(static_cast<uint32_t>(micros >> 32));
  w.Finish();
}

// ---------------------------------------------------------------- Device

Device::Device(const DeviceInfo& info, Io io, InferFn infer, void* infer_ctx)
    : info_(info), io_(io), infer_(infer), infer_ctx_(infer_ctx), rx_(), tx_(io), seq_(0),
      rx_window_(DK_RX_WINDOW), generation_(0), diag_(nullptr), last_record_(0), last_valid_(false) {
  memset(&stats_, 0, sizeof(stats_));
  in_record_ = RecordBytes(info.inputs, info.n_inputs);
  out_record_ = RecordBytes(info.outputs, info.n_outputs);
  expected_ = record_ = nacked_ = held_at_ = 0;
  rec_fill_ = held_len_ = repeat_results_ = 0;
  nack_valid_ = false;
  batch_.Reset(0, out_record_);
}

void Device::Begin() {
  ++generation_;
  rx_.Reset();
  seq_ = 0;
  expected_ = record_ = 0;
  rec_fill_ = held_len_ = repeat_results_ = 0;
  nack_valid_ = false;
  batch_.Reset(0, out_record_);
  last_valid_ = false;
  SendHello();
  if (!CheckConfig()) Log("deploykit: model records exceed the firmware's compiled buffers");
}

void Device::SetArenaUsed(uint32_t bytes) { info_.arena_used = bytes; }

void Device::SetRxWindow(uint16_t bytes) { rx_window_ = bytes; }

void Device::SetDiagnostics(const Diagnostics* diag) { diag_ = diag; }

bool Device::CheckConfig() {
  return in_record_ > 0 && in_record_ <= DK_MAX_INPUT_BYTES && out_record_ > 0 &&
         out_record_ <= DK_MAX_OUTPUT_BYTES;
}

void Device::Poll() {
  uint32_t generation = generation_;
  int c;
  while ((c = io_.read_byte(io_.ctx)) >= 0) {
    FrameStatus status = rx_.Feed(static_cast<uint8_t>(c));
    switch (status) {
      case FrameStatus::kNone: continue;
      case FrameStatus::kCobsError: ++stats_.cobs_errors; OnDamaged(); continue;
      case FrameStatus::kShort: ++stats_.short_errors; OnDamaged(); continue;
      case FrameStatus::kCrcError: ++stats_.crc_errors; OnDamaged(); continue;
      case FrameStatus::kOverflow: ++stats_.overflow_errors; OnDamaged(); continue;
      case FrameStatus::kFrame: break;
    }
    ++stats_.frames;
    Handle();
    if (generation != generation_) return;  // rebooted (Begin() ran under us)
  }
}

void Device::Handle() {
  const uint8_t* p = rx_.payload();
  size_t len = rx_.payload_len();
  if (rx_.version() != kProtocolVersion) {
    SendError(kBadVersion, rx_.version(), "unsupported protocol version");
    return;
  }
  switch (rx_.type()) {
    case kHelloReq:
      if (len != 0) break;
      SendHello();
      return;
    case kPing:
      WriteText(tx_, kPong, NextSeq(), p, len, "");
      ++stats_.frames_sent;
      return;
    case kReset:
      if (len != 0) break;
      if (io_.reboot) io_.reboot(io_.ctx);  // a board does not come back from this
      if (!io_.reboot) Begin();
      return;
    case kBegin:
      if (len != 4) break;
      HandleBegin(p, len);
      return;
    case kInput:
      if (len < 4) break;
      HandleInput(p, len);
      return;
    case kOpTimingReq:
      if (len != 4) break;
      if (CanAnswer(kCapOpTiming, Le32(p))) SendOpTimes(Le32(p));
      return;
    case kTensorDumpReq:
      if (len != 6) break;
      if (CanAnswer(kCapTensorDump, Le32(p))) SendTensorDump(Le32(p), static_cast<uint16_t>(p[4] | (p[5] << 8)));
      return;
    case kTimedLoopReq:
      if (len != 8) break;
      if (CanAnswer(kCapTimedLoop, Le32(p))) RunTimedLoop(Le32(p), Le32(p + 4));
      return;
    default:
      SendError(kUnknownType, rx_.seq(), "unknown message type");
      return;
  }
  SendError(kBadPayload, rx_.seq(), "payload does not parse");
}

void Device::HandleBegin(const uint8_t* p, size_t) {
  if (!CheckConfig()) {
    SendError(kOverflow, static_cast<uint32_t>(in_record_ > DK_MAX_INPUT_BYTES ? in_record_ : out_record_),
              "model records exceed DK_MAX_INPUT_BYTES/DK_MAX_OUTPUT_BYTES");
    return;
  }
  record_ = Le32(p);
  expected_ = static_cast<uint32_t>(record_ * in_record_);
  rec_fill_ = held_len_ = 0;
  nack_valid_ = false;
  batch_.Reset(record_, out_record_);
  SendU32(kAck, expected_);
}

void Device::HandleInput(const uint8_t* p, size_t len) {
  uint64_t offset = Le32(p);
  const uint8_t* data = p + 4;
  uint64_t end = offset + (len - 4);
  if (offset <= expected_ && expected_ < end) {
    if (!CheckConfig()) {
      SendError(kOverflow, static_cast<uint32_t>(in_record_ > DK_MAX_INPUT_BYTES ? in_record_ : out_record_),
                "model records exceed DK_MAX_INPUT_BYTES/DK_MAX_OUTPUT_BYTES");
      return;
    }
    size_t skip = static_cast<size_t>(expected_ - offset);
    size_t n = (len - 4) - skip;
    expected_ += static_cast<uint32_t>(n);
    size_t held_skip = 0, held_n = 0;  // bytes held after the gap this frame filled go on from here
    if (held_len_ > 0 && held_at_ <= expected_ && held_at_ + held_len_ > expected_) {
      held_skip = static_cast<size_t>(expected_ - held_at_);
      held_n = held_len_ - held_skip;
      expected_ += static_cast<uint32_t>(held_n);
    }
    if (held_len_ > 0 && held_at_ <= expected_) held_len_ = 0;  // consumed below, or old
    SendU32(kAck, expected_);  // at once: the host may refill the window while we compute
    Consume(data + skip, n);
    if (held_n > 0) Consume(held_ + held_skip, held_n);
    FlushResults();
  } else if (end <= expected_) {
    SendU32(kAck, expected_);  // a duplicate
  } else {
    Hold(offset, data, len - 4);
    if (!nack_valid_ || nacked_ != expected_) {
      nack_valid_ = true;  // a gap: ask once per expected offset, timeouts do the rest
      nacked_ = expected_;
      SendU32(kNack, expected_);
    }
  }
}

// A damaged chunk is likely the frame at expected_: NACK it at once, every time (selective
// repeat), so losing every frame in flight, or a frame sent again, costs no host timeout.
void Device::OnDamaged() {
  if (!DK_SELECTIVE_ACK) return;
  repeat_results_ = kRepeatResults;  // the line damages frames: send RESULTs twice for a while
  nack_valid_ = true;
  nacked_ = expected_;
  SendU32(kNack, expected_);
}

// A frame after a gap: keep it when it starts the held run or extends it and fits.
void Device::Hold(uint64_t offset, const uint8_t* data, size_t len) {
  if (!DK_SELECTIVE_ACK) return;
  if (held_len_ == 0 && len <= sizeof(held_)) {
    held_at_ = static_cast<uint32_t>(offset);
  } else if (held_len_ == 0 || offset != static_cast<uint64_t>(held_at_) + held_len_ ||
             held_len_ + len > sizeof(held_)) {
    return;
  }
  memcpy(held_ + held_len_, data, len);
  held_len_ += len;
}

void Device::Consume(const uint8_t* data, size_t len) {
  while (len > 0) {
    size_t take = in_record_ - rec_fill_;
    if (take > len) take = len;
    memcpy(rec_ + rec_fill_, data, take);
    rec_fill_ += take;
    data += take;
    len -= take;
    if (rec_fill_ == in_record_) {
      RunRecord();
      rec_fill_ = 0;
      ++record_;
    }
  }
}

void Device::RunRecord() {
  if (out_record_ + kResultOverhead > DK_MAX_PAYLOAD) {
    RunRecordInParts();
    return;
  }
  if (batch_.count() > 0 && (batch_.next_record() != record_ || !batch_.HasRoom())) FlushResults();
  if (batch_.count() == 0) batch_.Reset(record_, out_record_);
  uint32_t cycles = 0, micros = 0;
  int rc = infer_(infer_ctx_, rec_, in_record_, batch_.Slot(), out_record_, &cycles, &micros);
  if (rc != 0) {
    FlushResults();
    SendError(kInvokeFailed, record_, "Invoke failed");
    return;
  }
  batch_.Commit(cycles, micros);
  last_record_ = record_;
  last_valid_ = true;
}

bool Device::CanAnswer(uint32_t capability, uint32_t record) {
  bool built = (info_.capabilities & capability) != 0;
  if (capability == kCapOpTiming) {
    built = built && diag_ && diag_->op_count && diag_->op_time;
  } else if (capability == kCapTensorDump) {
    built = built && diag_ && diag_->op_count && diag_->op_outputs && diag_->op_output;
  }  // kCapTimedLoop needs only InferFn
  if (!built) {  // a request this firmware was not built for
    SendError(kUnknownType, rx_.seq(), "unknown message type");
    return false;
  }
  // a timed loop reruns rec_: a part of the next record there means the last one is gone
  bool kept = capability != kCapTimedLoop || rec_fill_ == 0;
  if (!last_valid_ || last_record_ != record || !kept) {
    SendError(kNotRun, record, "not the record run last");
    return false;
  }
  return true;
}

void Device::SendOpTimes(uint32_t record) {
  const size_t per_frame = (DK_MAX_PAYLOAD - kOpTimesHead) / kOpTimeEntry;
  uint16_t total = diag_->op_count(diag_->ctx);
  uint16_t first = 0;
  do {
    size_t left = static_cast<size_t>(total - first);
    size_t n = left < per_frame ? left : per_frame;
    StartOpTimes(tx_, NextSeq(), record, first, total);
    for (size_t i = 0; i < n; ++i) {
      OpTime t = {static_cast<uint16_t>(first + i), 0, 0};
      diag_->op_time(diag_->ctx, t.index, &t);
      PutOpTime(tx_, t);
    }
    tx_.Finish();
    ++stats_.frames_sent;
    first = static_cast<uint16_t>(first + n);
  } while (first < total);
}

void Device::SendTensorDump(uint32_t record, uint16_t max_chunk) {
  size_t room = DK_MAX_PAYLOAD > kTensorChunkHead ? DK_MAX_PAYLOAD - kTensorChunkHead : 0;
  if (max_chunk != 0 && max_chunk < room) room = max_chunk;
  uint16_t n_ops = diag_->op_count(diag_->ctx);
  if (room == 0 || n_ops == 0) {
    SendError(kOverflow, static_cast<uint32_t>(kTensorChunkHead + 1), "no room for tensor chunks");
    return;
  }
  for (uint16_t op = 0; op < n_ops; ++op) {
    uint8_t n_out = diag_->op_outputs(diag_->ctx, op);
    for (uint8_t k = 0; k < n_out; ++k) {
      TensorView v = {0, 0, nullptr, 0};
      if (!diag_->op_output(diag_->ctx, op, k, &v) || (v.bytes && !v.data)) v.bytes = 0;
      ChunkHead h = {record, op, n_ops, k, n_out, v.tensor, v.dtype, v.bytes, 0};
      do {  // an empty tensor still gets one chunk, so the host sees every output
        size_t len = v.bytes - h.offset < room ? v.bytes - h.offset : room;
        WriteTensorChunk(tx_, NextSeq(), h, v.data ? v.data + h.offset : nullptr, len);
        ++stats_.frames_sent;
        h.offset += static_cast<uint32_t>(len);
      } while (h.offset < v.bytes);
    }
  }
}

// Reruns the last record back to back until its inferences add up to min_ms milliseconds
// (once for 0), then answers TIMED_LOOP. Reads no byte meanwhile: the host waits for it.
void Device::RunTimedLoop(uint32_t record, uint32_t min_ms) {
  FlushResults();
  uint8_t* out = kResultsChunked ? big_out_ : batch_.Slot();  // scratch: never committed
  const uint64_t target = static_cast<uint64_t>(min_ms) * 1000u;
  const uint32_t kStuckAfter = 1u << 20;  // a timer that reads 0 would loop forever
  uint64_t cycles = 0, micros = 0;
  uint32_t n = 0;
  do {
    uint32_t c = 0, u = 0;
    if (infer_(infer_ctx_, rec_, in_record_, out, out_record_, &c, &u) != 0) {
      SendError(kInvokeFailed, record, "Invoke failed");
      return;
    }
    cycles += c;
    micros += u;
    ++n;
  } while (micros < target && n != 0xFFFFFFFFu && !(micros == 0 && n >= kStuckAfter));
  WriteTimedLoop(tx_, NextSeq(), record, n, cycles, micros);
  ++stats_.frames_sent;
}

// An output record too large for one RESULT: RESULT_PARTs in offset order, same timings.
void Device::RunRecordInParts() {
  FlushResults();
  uint32_t cycles = 0, micros = 0;
  int rc = infer_(infer_ctx_, rec_, in_record_, big_out_, out_record_, &cycles, &micros);
  if (rc != 0) {
    SendError(kInvokeFailed, record_, "Invoke failed");
    return;
  }
  const size_t chunk = DK_MAX_PAYLOAD - kResultPartHead;
  for (size_t off = 0; off < out_record_; off += chunk) {
    size_t n = out_record_ - off < chunk ? out_record_ - off : chunk;
    WriteResultPart(tx_, NextSeq(), record_, static_cast<uint32_t>(off), cycles, micros, big_out_ + off, n);
    ++stats_.frames_sent;
  }
}

void Device::FlushResults() {
  if (batch_.count() == 0) return;
  batch_.Emit(tx_, NextSeq());
  ++stats_.frames_sent;
  if (repeat_results_ > 0) {  // a noisy line: a lost RESULT would cost its records run again
    --repeat_results_;
    batch_.Emit(tx_, NextSeq());
    ++stats_.frames_sent;
  }
  batch_.Reset(batch_.next_record(), out_record_);
}

void Device::SendHello() {
  DeviceInfo info = info_;
  if (DK_SELECTIVE_ACK) info.capabilities |= kCapSelectiveAck;  // this core holds frames after a gap
  WriteHello(tx_, NextSeq(), info, DK_MAX_PAYLOAD, rx_window_);
  ++stats_.frames_sent;
}

void Device::SendU32(uint8_t type, uint32_t value) {
  WriteU32(tx_, type, NextSeq(), value);
  ++stats_.frames_sent;
}

void Device::SendError(uint16_t code, uint32_t detail, const char* text) {
  WriteError(tx_, NextSeq(), code, detail, text);
  ++stats_.frames_sent;
}

void Device::Log(const char* text) {
  if (tx_.busy()) {  // called from inside a write (e.g. an interrupt): never interleave
    ++stats_.logs_dropped;
    return;
  }
  WriteText(tx_, kLog, NextSeq(), 0, 0, text);
  ++stats_.frames_sent;
}

}  // namespace dk
