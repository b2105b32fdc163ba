// A device on the host: the real protocol core (dk_protocol.cpp) over stdin/stdout or a
// pty, with a deterministic fake inference the Python tests can predict:
//   output[i] = input[i % in_len] * 3 + 7 + i   (mod 256)
//   cycles    = --cycles + input[0] % 3,  micros = --micros
//   input[0] == --fail-byte makes the inference fail (ERROR INVOKE_FAILED).
// Options: --board ID --sha HEX64 --hz N --timer K --arena CONFIGURED:USED --simulated
//          --window N --inputs SPEC[,SPEC] --outputs SPEC[,SPEC] (SPEC = dtype:AxB:scale:zp)
//          --infer-us N --cycles N --micros N --fail-byte N --log-in-infer --banner TEXT --pty
//          --soft-reset (no Io.reboot hook: RESET restarts the core in place)
//          --firmware-id HEX32 --capabilities N (HELLO's build id and capability bits)
//          --faults off_by_one=R,stuck=R[,seed=N]  output faults, as the virtual board's
//            (deploykit/virtual_board/faults.py): per record, one element of the first output
//            one step off, or the result sent before repeated. A device that is wrong, not slow.
// Diagnostics (answered when --capabilities has OP_TIMING=1 / TENSOR_DUMP=2): 3 fake operators;
//   op i: op_code 9 + i, ticks 100 * (i + 1) + input[0]; one int8 output, tensor 10 + i, of
//   150 * (i + 1) bytes: byte j = input[j % in_len] + i + j (mod 256).
// With --pty the first stdout line is the slave path to open. At exit (end of input or
// SIGTERM) one "dk-stats key=value ..." line goes to stderr.
#include <math.h>
#include <signal.h>
#include <string.h>

#include <string>
#include <vector>

#include "posix_link.h"

namespace {

volatile sig_atomic_t g_stop = 0;

void OnSignal(int) { g_stop = 1; }

// ---- output faults (kept apart from the wire and HELLO parts of this program)
struct OutputFaults {
  double off_by_one = 0, stuck = 0;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  std::vector<uint8_t> last;

  bool Enabled() const { return off_by_one > 0 || stuck > 0; }

  double Uniform() {  // xorshift64*: reproducible for a seed, enough for fault rates
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<double>((state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
  }

  // Draws as the Python side does: stuck first, then off by one, for every record.
  void Apply(uint8_t* out, size_t len, const dk::TensorSpec& first) {
    if (!Enabled()) return;
    bool is_stuck = stuck > 0 && Uniform() < stuck;
    bool is_off = off_by_one > 0 && Uniform() < off_by_one;
    if (is_stuck && last.size() == len) {
      memcpy(out, last.data(), len);
    } else if (is_off) {
      OneStepOff(out, len, first);
    }
    last.assign(out, out + len);
  }

  void OneStepOff(uint8_t* out, size_t len, const dk::TensorSpec& spec) {
    size_t count = 1, item = ItemSize(spec.dtype);
    for (uint8_t d = 0; d < spec.ndims; ++d) count *= spec.dims[d];
    if (item == 0 || count == 0 || count * item > len) return;
    uint8_t* p = out + item * static_cast<size_t>(Uniform() * static_cast<double>(count));
    switch (spec.dtype) {
      case 9: { int8_t v; memcpy(&v, p, 1); v = v == 127 ? 126 : v + 1; memcpy(p, &v, 1); break; }
      case 3: *p = *p == 255 ? 254 : *p + 1; break;
      case 7: { int16_t v; memcpy(&v, p, 2); v = v == 32767 ? 32766 : v + 1; memcpy(p, &v, 2); break; }
      case 2: { int32_t v; memcpy(&v, p, 4); v = v == 2147483647 ? v - 1 : v + 1; memcpy(p, &v, 4); break; }
      case 1: { float v; memcpy(&v, p, 4); v = nextafterf(v, v < 3.0e38f ? INFINITY : -INFINITY); memcpy(p, &v, 4); break; }
      default: break;
    }
  }

  static size_t ItemSize(uint8_t dtype) {
    switch (dtype) {
      case 9: case 3: return 1;
      case 7: return 2;
      case 1: case 2: return 4;
      default: return 0;
    }
  }

  // "off_by_one=0.1,stuck=0.05,seed=3"
  bool Parse(const std::string& spec) {
    size_t start = 0;
    while (start < spec.size()) {
      size_t end = spec.find(',', start);
      if (end == std::string::npos) end = spec.size();
      std::string item = spec.substr(start, end - start);
      size_t eq = item.find('=');
      if (eq == std::string::npos) return false;
      std::string key = item.substr(0, eq);
      double value = atof(item.c_str() + eq + 1);
      if (key == "off_by_one") off_by_one = value;
      else if (key == "stuck") stuck = value;
      else if (key == "seed") state ^= static_cast<uint64_t>(value) * 0x9E3779B97F4A7C15ull;
      else return false;
      if ((key != "seed" && (value < 0 || value > 1)) || state == 0) return false;
      start = end + 1;
    }
    return true;
  }
};

struct Options {
  std::string board = "posix";
  std::string banner = "\r\nposix device booting\r\n";
  uint8_t sha[32] = {0};
  uint8_t firmware_id[dk::kFirmwareIdBytes] = {0};
  uint32_t capabilities = 0;
  uint32_t hz = 64000000, cycles = 7000, micros = 109, infer_us = 0, configured = 2048, used = 1500;
  int timer = 1, fail_byte = -1, window = DK_RX_WINDOW;
  bool simulated = false, pty = false, log_in_infer = false, soft_reset = false;
  std::vector<dk::TensorSpec> inputs, outputs;
  OutputFaults* faults = nullptr;
};

struct FakeModel {
  const Options* opt;
  dkhost::PosixLink* link;
  dk::Device* device;
};

const uint16_t kFakeOps = 3;
uint8_t g_last_input[DK_MAX_INPUT_BYTES];
uint8_t g_tensors[kFakeOps][150 * kFakeOps];

uint16_t FakeOpCount(void*) { return kFakeOps; }

bool FakeOpTime(void*, uint16_t op, dk::OpTime* out) {
  out->index = op;
  out->op_code = static_cast<uint16_t>(9 + op);
  out->ticks = 100u * (op + 1u) + g_last_input[0];
  return true;
}

uint8_t FakeOpOutputs(void*, uint16_t) { return 1; }

bool FakeOpOutput(void*, uint16_t op, uint8_t, dk::TensorView* out) {
  out->tensor = static_cast<uint16_t>(10 + op);
  out->dtype = 9;
  out->data = g_tensors[op];
  out->bytes = 150u * (op + 1u);
  return true;
}

void KeepForDiagnostics(const uint8_t* input, size_t in_len) {
  memcpy(g_last_input, input, in_len);
  for (uint16_t op = 0; op < kFakeOps; ++op) {
    for (size_t j = 0; j < 150u * (op + 1u); ++j) {
      g_tensors[op][j] = static_cast<uint8_t>(input[j % in_len] + op + j);
    }
  }
}

int FakeInfer(void* ctx, const uint8_t* input, size_t in_len, uint8_t* output, size_t out_len,
              uint32_t* cycles, uint32_t* micros) {
  FakeModel* m = static_cast<FakeModel*>(ctx);
  if (m->opt->log_in_infer) m->device->Log("fake invoke");
  if (m->opt->infer_us) dkhost::SleepMicros(m->opt->infer_us);
  m->link->AfterInference();
  if (static_cast<int>(input[0]) == m->opt->fail_byte) return 1;
  for (size_t i = 0; i < out_len; ++i) output[i] = static_cast<uint8_t>(input[i % in_len] * 3 + 7 + i);
  if (m->opt->faults) m->opt->faults->Apply(output, out_len, m->opt->outputs[0]);
  KeepForDiagnostics(input, in_len);
  *cycles = m->opt->cycles + input[0] % 3;
  *micros = m->opt->micros;
  return 0;
}

bool ParseSpecs(const char* arg, std::vector<dk::TensorSpec>* out) {
  std::string s(arg);
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    dk::TensorSpec spec;
    if (!dkhost::ParseSpec(s.substr(start, end - start), &spec)) return false;
    out->push_back(spec);
    start = end + 1;
  }
  return true;
}

void ParseHex(const char* v, uint8_t* out, size_t n) {
  for (size_t k = 0; k < n && v[2 * k] && v[2 * k + 1]; ++k) {
    char byte[3] = {v[2 * k], v[2 * k + 1], 0};
    out[k] = static_cast<uint8_t>(strtoul(byte, nullptr, 16));
  }
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    bool has_value = true;
    if (a == "--board") o->board = v;
    else if (a == "--banner") o->banner = v;
    else if (a == "--hz") o->hz = static_cast<uint32_t>(strtoul(v, nullptr, 0));
    else if (a == "--timer") o->timer = atoi(v);
    else if (a == "--window") o->window = atoi(v);
    else if (a == "--cycles") o->cycles = static_cast<uint32_t>(strtoul(v, nullptr, 0));
    else if (a == "--micros") o->micros = static_cast<uint32_t>(strtoul(v, nullptr, 0));
    else if (a == "--infer-us") o->infer_us = static_cast<uint32_t>(strtoul(v, nullptr, 0));
    else if (a == "--fail-byte") o->fail_byte = atoi(v);
    else if (a == "--arena") sscanf(v, "%u:%u", &o->configured, &o->used);
    else if (a == "--inputs") { o->inputs.clear(); if (!ParseSpecs(v, &o->inputs)) return false; }
    else if (a == "--outputs") { o->outputs.clear(); if (!ParseSpecs(v, &o->outputs)) return false; }
    else if (a == "--capabilities") o->capabilities = static_cast<uint32_t>(strtoul(v, nullptr, 0));
    else if (a == "--faults") { if (!o->faults || !o->faults->Parse(v)) return false; }
    else if (a == "--sha") ParseHex(v, o->sha, sizeof(o->sha));
    else if (a == "--firmware-id") ParseHex(v, o->firmware_id, sizeof(o->firmware_id));
    else {
      has_value = false;
      if (a == "--simulated") o->simulated = true;
      else if (a == "--pty") o->pty = true;
      else if (a == "--log-in-infer") o->log_in_infer = true;
      else if (a == "--soft-reset") o->soft_reset = true;
      else return false;
    }
    if (has_value) ++i;
  }
  return !o->inputs.empty() && !o->outputs.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  OutputFaults faults;
  opt.faults = &faults;
  if (!ParseArgs(argc, argv, &opt)) {
    fprintf(stderr, "usage: posix_device --inputs SPEC --outputs SPEC [options] (see source)\n");
    return 2;
  }
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  int in_fd = 0, out_fd = 1, slave_fd = -1;
  if (opt.pty) {
    std::string path;
    in_fd = out_fd = dkhost::OpenRawPty(&path, &slave_fd);
    if (in_fd < 0) {
      perror("pty");
      return 1;
    }
    printf("%s\n", path.c_str());
    fflush(stdout);
  }
  dkhost::PosixLink link(in_fd, out_fd, static_cast<size_t>(opt.window));
  dk::DeviceInfo info = {opt.board.c_str(), opt.sha, opt.hz, static_cast<dk::TimerKind>(opt.timer),
                         opt.configured, opt.used, opt.simulated,
                         opt.inputs.data(), static_cast<uint8_t>(opt.inputs.size()),
                         opt.outputs.data(), static_cast<uint8_t>(opt.outputs.size()),
                         opt.firmware_id, opt.capabilities};
  FakeModel model = {&opt, &link, nullptr};
  dk::Io io = link.io();
  if (opt.soft_reset) io.reboot = nullptr;  // as a sketch without a reboot hook
  dk::Device device(info, io, FakeInfer, &model);
  model.device = &device;
  dk::Diagnostics diagnostics = {FakeOpCount, FakeOpTime, FakeOpOutputs, FakeOpOutput, nullptr};
  device.SetDiagnostics(&diagnostics);
  device.SetRxWindow(static_cast<uint16_t>(opt.window));
  link.Attach(&device, opt.banner);
  link.Boot();
  device.Log("posix device ready");
  while (!g_stop && link.Wait(100)) device.Poll();
  const dk::Stats& s = device.stats();
  fprintf(stderr,
          "dk-stats frames=%u cobs=%u short=%u crc=%u overflow=%u sent=%u logs_dropped=%u "
          "fifo_dropped=%u\n",
          s.frames, s.cobs_errors, s.short_errors, s.crc_errors, s.overflow_errors, s.frames_sent,
          s.logs_dropped, link.dropped());
  if (slave_fd >= 0) close(slave_fd);
  return 0;
}
