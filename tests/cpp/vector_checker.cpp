// Runs the C++ protocol core on requests read line by line from stdin and prints what it
// produced, so tests/test_protocol_cpp.py can hold it against deploykit/protocol/vectors.json
// and against the Python implementation. Bytes travel as hex ("-" for none). Build it with
// a large -DDK_MAX_PAYLOAD: "decode" takes its limit at run time, up to that.
//
//   crc HEX                                -> crc HEX8
//   decode MAX_PAYLOAD HEX                 -> one "frame TYPE SEQ PAYLOAD" / "error KIND"
//                                             line per event, then "end"
//   frame TYPE SEQ PAYLOAD                 -> wire HEX           (raw frame encoding)
//   u32 TYPE SEQ VALUE                     -> wire HEX           (ACK, NACK)
//   text TYPE SEQ HEAD TEXT                -> wire HEX           (PONG, LOG)
//   error SEQ CODE DETAIL TEXT             -> wire HEX
//   result SEQ FIRST OUT_RECORD OUTPUTS CYCLES MICROS  (comma lists) -> wire HEX
//   hello SEQ BOARD SHA HZ TIMER CONFIGURED USED MAX_PAYLOAD WINDOW SIMULATED INS OUTS FIRMWARE_ID CAPS
//         (specs: "-" or comma list of dtype:d1.d2:scale_bits_hex:zero_point; FIRMWARE_ID: hex,
//         "-" for none) -> wire HEX
//   optimes SEQ RECORD FIRST TOTAL ENTRIES (comma list of index:op_code:ticks) -> wire HEX
//   chunk SEQ RECORD OP N_OPS OUTPUT N_OUTPUTS TENSOR DTYPE TOTAL OFFSET DATA    -> wire HEX
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "dk_protocol.h"

namespace {

typedef std::vector<uint8_t> Bytes;

Bytes FromHex(const std::string& hex) {
  Bytes out;
  if (hex == "-") return out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(strtoul(hex.substr(i, 2).c_str(), nullptr, 16)));
  }
  return out;
}

std::string ToHex(const uint8_t* data, size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < len; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

uint32_t Num(const std::string& s) { return static_cast<uint32_t>(strtoul(s.c_str(), nullptr, 0)); }

void Capture(void* ctx, const uint8_t* data, size_t len) {
  static_cast<Bytes*>(ctx)->insert(static_cast<Bytes*>(ctx)->end(), data, data + len);
}

struct Sink {
  Bytes wire;
  dk::Io io;
  dk::FrameWriter writer;
  Sink() : io(MakeIo(&wire)), writer(io) {}
  static dk::Io MakeIo(Bytes* wire) {
    dk::Io io = {nullptr, Capture, wire, nullptr};
    return io;
  }
  void Print() { printf("wire %s\n", ToHex(wire.data(), wire.size()).c_str()); }
};

std::vector<dk::TensorSpec> Specs(const std::string& arg) {
  std::vector<dk::TensorSpec> out;
  if (arg == "-") return out;
  for (const std::string& item : Split(arg, ',')) {
    std::vector<std::string> f = Split(item, ':');
    dk::TensorSpec s = {};
    s.dtype = static_cast<uint8_t>(Num(f[0]));
    std::vector<std::string> dims = Split(f[1], '.');
    s.ndims = static_cast<uint8_t>(dims.size());
    for (size_t d = 0; d < dims.size(); ++d) s.dims[d] = static_cast<uint16_t>(Num(dims[d]));
    uint32_t bits = static_cast<uint32_t>(strtoul(f[2].c_str(), nullptr, 16));
    memcpy(&s.scale, &bits, 4);
    s.zero_point = static_cast<int32_t>(strtol(f[3].c_str(), nullptr, 0));
    out.push_back(s);
  }
  return out;
}

std::string Text(const std::string& hex) {
  Bytes b = FromHex(hex);
  return std::string(b.begin(), b.end());
}

void Decode(const std::vector<std::string>& a) {
  static const char* kKinds[] = {"", "", "cobs", "short", "crc", "overflow"};
  dk::FrameDecoder decoder(Num(a[1]));
  for (uint8_t byte : FromHex(a[2])) {
    dk::FrameStatus status = decoder.Feed(byte);
    if (status == dk::FrameStatus::kFrame) {
      std::string payload = ToHex(decoder.payload(), decoder.payload_len());
      printf("frame %u %u %s\n", decoder.type(), decoder.seq(), payload.empty() ? "-" : payload.c_str());
    } else if (status != dk::FrameStatus::kNone) {
      printf("error %s\n", kKinds[static_cast<int>(status)]);
    }
  }
  printf("end\n");
}

void Result(const std::vector<std::string>& a) {
  Sink sink;
  dk::ResultBatch batch;
  size_t out_record = Num(a[3]);
  Bytes outputs = FromHex(a[4]);
  std::vector<std::string> cycles = Split(a[5], ','), micros = Split(a[6], ',');
  batch.Reset(Num(a[2]), out_record);
  for (size_t i = 0; i < cycles.size(); ++i) {
    if (!batch.HasRoom()) {
      printf("full %zu\n", i);
      return;
    }
    memcpy(batch.Slot(), outputs.data() + i * out_record, out_record);
    batch.Commit(Num(cycles[i]), Num(micros[i]));
  }
  batch.Emit(sink.writer, static_cast<uint16_t>(Num(a[1])));
  sink.Print();
}

void Hello(const std::vector<std::string>& a) {
  Sink sink;
  std::string board = Text(a[2]);
  Bytes sha = FromHex(a[3]);
  std::vector<dk::TensorSpec> ins = Specs(a[11]), outs = Specs(a[12]);
  Bytes firmware_id = FromHex(a[13]);
  dk::DeviceInfo info = {board.c_str(), sha.data(), Num(a[4]), static_cast<dk::TimerKind>(Num(a[5])),
                         Num(a[6]), Num(a[7]), Num(a[10]) != 0, ins.data(),
                         static_cast<uint8_t>(ins.size()), outs.data(), static_cast<uint8_t>(outs.size()),
                         firmware_id.empty() ? nullptr : firmware_id.data(), Num(a[14])};
  dk::WriteHello(sink.writer, static_cast<uint16_t>(Num(a[1])), info, static_cast<uint16_t>(Num(a[8])),
                 static_cast<uint16_t>(Num(a[9])));
  sink.Print();
}

void OpTimes(const std::vector<std::string>& a) {
  Sink sink;
  std::vector<dk::OpTime> entries;
  if (a[5] != "-") {
    for (const std::string& item : Split(a[5], ',')) {
      std::vector<std::string> f = Split(item, ':');
      dk::OpTime t = {static_cast<uint16_t>(Num(f[0])), static_cast<uint16_t>(Num(f[1])), Num(f[2])};
      entries.push_back(t);
    }
  }
  dk::WriteOpTimes(sink.writer, static_cast<uint16_t>(Num(a[1])), Num(a[2]), static_cast<uint16_t>(Num(a[3])),
                   static_cast<uint16_t>(Num(a[4])), entries.data(), entries.size());
  sink.Print();
}

void Chunk(const std::vector<std::string>& a) {
  Sink sink;
  dk::ChunkHead h = {Num(a[2]), static_cast<uint16_t>(Num(a[3])), static_cast<uint16_t>(Num(a[4])),
                     static_cast<uint8_t>(Num(a[5])), static_cast<uint8_t>(Num(a[6])),
                     static_cast<uint16_t>(Num(a[7])), static_cast<uint8_t>(Num(a[8])), Num(a[9]), Num(a[10])};
  Bytes data = FromHex(a[11]);
  dk::WriteTensorChunk(sink.writer, static_cast<uint16_t>(Num(a[1])), h, data.data(), data.size());
  sink.Print();
}

void Run(const std::vector<std::string>& a) {
  Sink sink;
  const std::string& cmd = a[0];
  if (cmd == "crc") {
    Bytes data = FromHex(a[1]);
    printf("crc %08x\n", dk::Crc32(0, data.data(), data.size()));
  } else if (cmd == "decode") {
    Decode(a);
  } else if (cmd == "frame") {
    Bytes payload = FromHex(a[3]);
    sink.writer.Start(static_cast<uint8_t>(Num(a[1])), static_cast<uint16_t>(Num(a[2])));
    sink.writer.Put(payload.data(), payload.size());
    sink.writer.Finish();
    sink.Print();
  } else if (cmd == "u32") {
    dk::WriteU32(sink.writer, static_cast<uint8_t>(Num(a[1])), static_cast<uint16_t>(Num(a[2])), Num(a[3]));
    sink.Print();
  } else if (cmd == "text") {
    Bytes head = FromHex(a[3]);
    dk::WriteText(sink.writer, static_cast<uint8_t>(Num(a[1])), static_cast<uint16_t>(Num(a[2])),
                  head.data(), head.size(), Text(a[4]).c_str());
    sink.Print();
  } else if (cmd == "error") {
    dk::WriteError(sink.writer, static_cast<uint16_t>(Num(a[1])), static_cast<uint16_t>(Num(a[2])),
                   Num(a[3]), Text(a[4]).c_str());
    sink.Print();
  } else if (cmd == "result") {
    Result(a);
  } else if (cmd == "result_part") {
    Bytes data = FromHex(a[6]);
    dk::WriteResultPart(sink.writer, static_cast<uint16_t>(Num(a[1])), Num(a[2]), Num(a[3]), Num(a[4]),
                        Num(a[5]), data.data(), data.size());
    sink.Print();
  } else if (cmd == "hello") {
    Hello(a);
  } else if (cmd == "optimes") {
    OpTimes(a);
  } else if (cmd == "timedloop") {
    dk::WriteTimedLoop(sink.writer, static_cast<uint16_t>(Num(a[1])), Num(a[2]), Num(a[3]),
                       strtoull(a[4].c_str(), nullptr, 0), strtoull(a[5].c_str(), nullptr, 0));
    sink.Print();
  } else if (cmd == "chunk") {
    Chunk(a);
  } else {
    printf("unknown %s\n", cmd.c_str());
  }
}

}  // namespace

int main() {
  char line[1 << 16];
  while (fgets(line, sizeof(line), stdin)) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s.empty()) continue;
    Run(Split(s, ' '));
    fflush(stdout);
  }
  return 0;
}
