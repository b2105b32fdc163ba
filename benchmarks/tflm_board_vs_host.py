"""Do a board's TFLM library and the host wheel (tflite-micro) compute the same outputs?

Not run in CI: it compiles a board library's sources with the host g++ (as the virtual
board's native build does: ARDUINO defined, so the port's CMSIS-NN kernels with their C
fallbacks, ARDUINO_EXCLUDE_CODE), runs each manifest's model on its test data there and on
TFLM-host, and prints the fraction of identical outputs. Give the library's sources as a
checkout at the commit boards/*.toml pins, fetched outside the repository:

  git -C Chirale_TensorFlowLite archive 46da2f98 src | tar -x -C /tmp/chirale
  python benchmarks/tflm_board_vs_host.py /tmp/chirale/src OUTDIR1 [OUTDIR2 ...]

OUTDIR: a `deploykit convert` output with test data. Compiling takes minutes (2 jobs).
Measured 2026-11-30 (Chirale 46da2f98 and the Teensy branch 25b752ea, vs tflite-micro
0.dev20261023182759): sine, linear, gestures 100 % identical on both; a per-channel-FC model
0 % identical (up to 47 steps, accuracy 0.890 -> 0.855); its --fc-per-tensor rewrite 100 %.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MAIN = r"""
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
extern "C" void DebugLog(const char* s) { fputs(s, stderr); }
namespace peripherals { uint32_t MicrosecondsCounter() { return 0; } }
static std::vector<unsigned char> slurp(const char* p) {
  FILE* f = fopen(p, "rb"); std::vector<unsigned char> v; int c;
  while ((c = fgetc(f)) != EOF) v.push_back((unsigned char)c); fclose(f); return v; }
alignas(16) static unsigned char arena[4 << 20];
int main(int argc, char** argv) {
  auto model_bytes = slurp(argv[1]); auto in = slurp(argv[2]);
  static tflite::MicroMutableOpResolver<16> r;
  r.AddFullyConnected(); r.AddConv2D(); r.AddDepthwiseConv2D(); r.AddMaxPool2D(); r.AddAveragePool2D();
  r.AddSoftmax(); r.AddReshape(); r.AddQuantize(); r.AddDequantize(); r.AddLogistic(); r.AddMean();
  r.AddAdd(); r.AddMul(); r.AddRelu(); r.AddTanh(); r.AddShape();
  tflite::MicroInterpreter it(tflite::GetModel(model_bytes.data()), r, arena, sizeof(arena));
  if (it.AllocateTensors() != kTfLiteOk) return 3;
  size_t ib = it.input(0)->bytes, ob = it.output(0)->bytes;
  for (size_t off = 0; off + ib <= in.size(); off += ib) {
    memcpy(it.input(0)->data.raw, in.data() + off, ib);
    if (it.Invoke() != kTfLiteOk) return 4;
    fwrite(it.output(0)->data.raw, 1, ob, stdout);
  }
  return 0;
}
"""
SKIP = ("peripherals/", "test_over_serial/", "_test", "kernel_runner", "test_helper", "mock_micro_graph",
        "system_setup", "debug_log.c")


def build(src: Path, work: Path) -> Path:
    """Compile the library and the runner above; return the runner's path."""
    inc = [src, src / "third_party/flatbuffers/include", src / "third_party/gemmlowp", src / "third_party/ruy",
           src / "third_party/cmsis_nn", src / "third_party/cmsis_nn/Include", src / "third_party/kissfft",
           src / "third_party/cmsis/CMSIS/NN/Include", src / "third_party/cmsis/CMSIS/DSP/Include",
           src / "third_party/cmsis/CMSIS/Core/Include"]
    # -fno-exceptions as on the boards: the 2022 Teensy branch's placement new with a private
    # operator delete does not compile otherwise.
    flags = ["-O1", "-w", "-fno-exceptions", "-DARDUINO=10819", "-DARDUINO_EXCLUDE_CODE", "-DTF_LITE_STATIC_MEMORY",
             *[f"-I{p}" for p in inc]]
    files = [p for p in src.rglob("*") if p.suffix in (".c", ".cc", ".cpp")
             and not any(s in str(p.relative_to(src)) for s in SKIP)]
    (work / "main.cpp").write_text(MAIN)

    def compile_one(p: Path) -> Path:
        obj = work / (str(p.relative_to(src)).replace("/", "_") + ".o")
        cc = ["gcc", "-std=gnu11"] if p.suffix == ".c" else ["g++", "-std=gnu++17"]
        subprocess.run([*cc, "-c", *flags, str(p), "-o", str(obj)], check=True)
        return obj

    with ThreadPoolExecutor(2) as pool:
        objs = list(pool.map(compile_one, files))
    runner = work / "run"
    subprocess.run(["g++", "-std=gnu++17", *flags, str(work / "main.cpp"), *map(str, objs), "-o", str(runner)],
                   check=True)
    return runner


def compare(runner: Path, outdir: Path, work: Path) -> str:
    from deploykit.model.datafiles import load_data
    from deploykit.model.manifest import load
    from deploykit.model.quantization import to_input_dtype
    from deploykit.model.tflm_host import TflmRunner
    m = load(outdir)
    x = to_input_dtype(load_data(m.source_path("test_data")).x, m["inputs"][0])
    (work / "in.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    done = subprocess.run([str(runner), str(m.model_path), str(work / "in.bin")], capture_output=True)
    host = TflmRunner(m.model_bytes()).predict(x).reshape(len(x), -1)
    if done.returncode:
        return f"{m['name']}: the board library failed (exit {done.returncode})"
    board = np.frombuffer(done.stdout, host.dtype).reshape(host.shape)
    same = (host == board).all(axis=1).mean()
    steps = np.abs(host.astype(np.int64) - board.astype(np.int64)).max()
    return f"{m['name']}: {len(x)} samples, identical outputs {same:.1%}, max difference {steps} step(s)"


def main(argv: list[str]) -> None:
    src, outdirs = Path(argv[0]), [Path(p) for p in argv[1:]]
    with tempfile.TemporaryDirectory() as tmp:
        runner = build(src, Path(tmp))
        for outdir in outdirs:
            print(compare(runner, outdir, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
