"""`render --diagnostics`: the firmware profiles every operator and keeps every tensor.

The rendered runner is compiled with the host g++ (-Wall -Wextra -Werror) against stand-in
TFLM headers that declare exactly the API it uses (the tflite-micro wheel has no headers),
with and without --diagnostics; the arena grows by the figure measured on the host.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from deploykit.cli import main
from deploykit.firmware.resources import data_dir
from deploykit.model import tflite_model
from deploykit.model.tflm_layers import op_code, smallest_preserving_arena

pytestmark = pytest.mark.slow  # converts the examples once per session
BOARD = "nano33ble_sense"

STUB_TFLM = {
    "tensorflow/lite/micro/micro_interpreter.h": """#pragma once
#include <stddef.h>
#include <stdint.h>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt8 = 9 } TfLiteType;
typedef struct { int size; int data[1]; } TfLiteIntArray;
typedef union { void* raw; const void* raw_const; int8_t* int8; } TfLitePtrUnion;
typedef struct { TfLitePtrUnion data; size_t bytes; } TfLiteTensor;
typedef struct { TfLitePtrUnion data; TfLiteIntArray* dims; TfLiteType type; } TfLiteEvalTensor;
namespace tflite {
class Model { public: uint32_t version() const; };
const Model* GetModel(const void* buf);
class MicroOpResolver {};
class MicroResourceVariables;
class MicroProfilerInterface;
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size, MicroResourceVariables* resource_variables = nullptr,
                   MicroProfilerInterface* profiler = nullptr, bool preserve_all_tensors = false);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  size_t arena_used_bytes() const;
  size_t inputs_size() const;
  size_t outputs_size() const;
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
  TfLiteEvalTensor* GetTensor(int tensor_index, int subgraph_index = 0);
};
}  // namespace tflite
""",
    "tensorflow/lite/micro/micro_log.h": "#pragma once\nvoid MicroPrintf(const char* format, ...);\n",
    "tensorflow/lite/schema/schema_generated.h": "#pragma once\n#define TFLITE_SCHEMA_VERSION 3\n",
    "tensorflow/lite/micro/micro_profiler_interface.h": """#pragma once
#include <stdint.h>
namespace tflite {
class MicroProfilerInterface {
 public:
  virtual ~MicroProfilerInterface() {}
  virtual uint32_t BeginEvent(const char* tag) = 0;
  virtual void EndEvent(uint32_t event_handle) = 0;
};
}  // namespace tflite
""",
}


def _stub_tflm(root):
    methods = sorted(set(json.loads((data_dir("firmware_templates") / "tflm_ops.json").read_text())["ops"].values()))
    files = dict(STUB_TFLM)
    files["tensorflow/lite/micro/micro_mutable_op_resolver.h"] = (
        "#pragma once\n#include \"tensorflow/lite/micro/micro_interpreter.h\"\nnamespace tflite {\n"
        "template <unsigned int tOpCount>\nclass MicroMutableOpResolver : public MicroOpResolver {\n public:\n"
        + "".join(f"  TfLiteStatus {m}();\n" for m in methods) + "};\n}  // namespace tflite\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _render(manifest, out, capsys, *extra):
    with pytest.raises(SystemExit) as info:
        main(["render", str(manifest.path), "--board", BOARD, "-o", str(out), *extra])
    assert info.value.code in (0, None), capsys.readouterr().err
    return out


def test_render_diagnostics_grows_the_arena_by_the_measured_figure(converted_examples, tmp_path, capsys):
    manifest = converted_examples["gestures"]
    plain = _render(manifest, tmp_path / "plain", capsys)
    diag = _render(manifest, tmp_path / "diag", capsys, "--diagnostics")
    arena = {name: int(re.search(r"#define DK_ARENA_BYTES (\d+)", (tmp_path / name / "src" / "dk_config.h")
                                 .read_text()).group(1)) for name in ("plain", "diag")}
    extra = smallest_preserving_arena(manifest.model_bytes()) - int(manifest["arena"]["host_min"])
    assert extra > 0 and arena["diag"] - arena["plain"] == -(-extra // 16) * 16
    assert f"+{arena['diag'] - arena['plain']} bytes for --diagnostics" in (diag / "README.md").read_text()
    config = (diag / "src" / "dk_config.h").read_text()
    assert "#define DK_CAPABILITIES 7u" in config  # OP_TIMING, TENSOR_DUMP, TIMED_LOOP
    assert "DK_CAPABILITIES" not in (plain / "src" / "dk_config.h").read_text()
    runner = (diag / "src" / "dk_runner.cpp").read_text()
    ops = tflite_model.parse(manifest.model_bytes()).operators
    codes = re.search(r"kDiagOpCodes\[kDiagOps\] = \{([^}]*)\}", runner).group(1)
    assert [int(c) for c in codes.split(",")] == [op_code(o.op) for o in ops]
    outputs = re.search(r"kDiagOutputs\[\d+\] = \{([^}]*)\}", runner).group(1)
    assert [int(c) for c in outputs.split(",")] == [t for o in ops for t in o.outputs]
    assert "&g_profiler, true);" in runner and "g_profiler.Restart();" in runner
    assert "return nullptr;  // rendered without --diagnostics" in (plain / "src" / "dk_runner.cpp").read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs the host g++")
@pytest.mark.parametrize("diagnostics", [True, False], ids=["diagnostics", "plain"])
def test_rendered_runner_compiles_without_warnings(converted_examples, tmp_path, capsys, diagnostics):
    manifest = converted_examples["gestures"]
    project = _render(manifest, tmp_path / "fw", capsys, *(["--diagnostics"] if diagnostics else []))
    stub = _stub_tflm(tmp_path / "stub")
    cmd = ["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", str(stub),
           "-I", str(project / "src"), str(project / "src" / "dk_runner.cpp")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
