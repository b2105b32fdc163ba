"""`deploykit render`: every board renders a PlatformIO project PlatformIO itself can read,
with exactly the model's ops, safe C for hostile names, atomic and reproducible output,
and one-line refusals (exit 2, nothing written) for bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

from deploykit.firmware.boards import all_boards, load_board
from deploykit.firmware.render import max_payload_for_window, render
from deploykit.firmware.resources import data_dir
from deploykit.model.manifest import sha256_file

BOARDS = all_boards()
HOSTILE_NAME = 'x"; system("rm -rf /"); // naïve ☃'
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="needs the host g++ (CI installs it)")


def copy_manifest(manifest, target: Path, **changes) -> Path:
    """A copy of a converted example (manifest + .tflite) with some manifest keys changed."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(manifest.model_path, target / manifest["model_file"])
    data = dict(manifest.data, **changes)
    (target / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return target / "manifest.json"


def read_config(project: Path):
    from platformio.project.config import ProjectConfig
    return ProjectConfig(str(project / "platformio.ini"), parse_extra=False, expand_interpolations=True)


@pytest.fixture(scope="module")
def sine_renders(converted_examples, tmp_path_factory):
    root = tmp_path_factory.mktemp("renders")
    manifest = converted_examples["sine"].path
    return {b.id: render(manifest, b.id, root / b.id) for b in BOARDS}


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.id)
def test_every_board_renders_a_config_platformio_reads(sine_renders, board):
    project = sine_renders[board.id]
    config = read_config(project)
    env = f"env:{board.id}"
    assert config.envs() == [board.id]
    assert config.get(env, "platform") == board.platform_spec
    if board.board:
        assert config.get(env, "board") == board.board
        assert config.get(env, "framework") == [board.framework]
    else:
        assert not config.has_option(env, "board") and not config.has_option(env, "framework")
    assert config.get(env, "lib_deps") == list(board.lib_deps)
    assert config.get(env, "monitor_speed") == board.baud
    flags = config.get(env, "build_flags")
    assert f"-DDK_RX_WINDOW={board.rx_buffer_bytes}" in flags
    for name in ("dk_protocol.h", "dk_protocol.cpp", "dk_runner.cpp", "model_data.cpp", "main.cpp"):
        assert (project / "src" / name).is_file()


def test_ini_names_the_model_hash_for_flash(sine_renders, converted_examples):
    """deploykit.toolchain.flash reads "Model sha256 <hex>" from the rendered platformio.ini."""
    from deploykit.toolchain.flash import expected_sha256
    for project in sine_renders.values():
        assert expected_sha256(project) == converted_examples["sine"].sha256


def test_protocol_core_is_copied_verbatim(sine_renders):
    for name in ("dk_protocol.h", "dk_protocol.cpp"):
        original = (data_dir("firmware_templates") / "src" / name).read_bytes()
        assert all((p / "src" / name).read_bytes() == original for p in sine_renders.values())


def test_arduino_sketch_wires_the_boards_timer(sine_renders):
    expected = {"dwt": "0xE0001004UL", "ccount": "ESP.getCycleCount()", "micros": "micros()",
                "esp_cpu": "esp_cpu_get_cycle_count()"}
    for board in BOARDS:
        main = (sine_renders[board.id] / "src" / "main.cpp").read_text()
        if board.adapter == "arduino":
            assert "void setup()" in main and "void loop()" in main
            assert expected[board.timer] in main
            assert "__wrap_DebugLog" in main
        else:
            assert "int main()" in main and "extern \"C\" void DebugLog" in main


# Stand-ins for what each Arduino core's own headers declare, so the sketch's reboot
# branches can be syntax-checked with the host g++ (no Arduino core is installed here).
STUB_ARDUINO_H = """#pragma once
#include <stddef.h>
#include <stdint.h>
struct StubSerial { void begin(unsigned long) {} int available() { return 0; } int read() { return -1; }
  size_t write(const uint8_t*, size_t n) { return n; } void flush() {} };
extern StubSerial Serial;
unsigned long micros();
struct StubEsp { void restart(); uint32_t getCycleCount(); };
extern StubEsp ESP;
struct StubRp2040 { void reboot(); };
extern StubRp2040 rp2040;
#define SCB_AIRCR (*(volatile uint32_t*)0xE000ED0CUL)
#ifdef STUB_CMSIS
#define __CORTEX_M 4U
void NVIC_SystemReset(void);
#endif
"""
# core macros -> what RESET must call (None: no hook, RESET restarts the protocol only)
REBOOT_BRANCHES = {
    ("-DARDUINO_ARCH_ESP32",): "ESP.restart",
    ("-DARDUINO_ARCH_MBED", "-DARDUINO_ARCH_RP2040"): "NVIC_SystemReset",
    ("-DARDUINO_ARCH_RP2040",): "rp2040.reboot",
    ("-DTEENSYDUINO=159",): "0xE000ED0CUL) = 0x05FA0004UL",  # SCB_AIRCR, expanded
    ("-DSTUB_CMSIS",): "NVIC_SystemReset",
    (): None,
}


@needs_gpp
@pytest.mark.slow
def test_arduino_sketch_reset_reboots_the_chip(sine_renders, tmp_path):
    """RESET calls the core's reboot (picked by its macros); a target none names gets no hook."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "Arduino.h").write_text(STUB_ARDUINO_H)
    (stub / "mbed.h").write_text("void NVIC_SystemReset(void);\n")
    (stub / "esp_idf_version.h").write_text("#define ESP_IDF_VERSION_MAJOR 5\n")
    (stub / "esp_cpu.h").write_text("#include <stdint.h>\nuint32_t esp_cpu_get_cycle_count(void);\n")
    for board in (b for b in BOARDS if b.tflm_header):
        (stub / board.tflm_header).write_text("")
    for board in (b for b in BOARDS if b.adapter == "arduino"):
        main = sine_renders[board.id] / "src" / "main.cpp"
        assert "dk::Io{DkReadByte, DkWrite, nullptr, DK_REBOOT_HOOK}" in main.read_text()
        for macros, call in REBOOT_BRANCHES.items():
            cmd = ["g++", "-std=c++11", "-Wall", "-Werror", "-I", str(stub), "-I", str(main.parent), *macros]
            subprocess.run([*cmd, "-fsyntax-only", str(main)], check=True, capture_output=True)
            text = subprocess.run([*cmd, "-E", "-P", str(main)], check=True, capture_output=True,
                                  text=True).stdout
            hook = re.search(r"dk::Io\{DkReadByte, DkWrite, nullptr, (\w+)\}", text).group(1)
            assert hook == ("DkReboot" if call else "nullptr"), (board.id, macros)
            if call:
                assert call in text.split("static void DkReboot(void*)")[1].split("\n}")[0], (board.id, macros)


@pytest.mark.parametrize("example", ["sine", "linear", "gestures"])
def test_op_resolver_lists_exactly_the_models_ops(converted_examples, tmp_path, example):
    manifest = converted_examples[example]
    project = render(manifest.path, "nano33ble_sense", tmp_path / example)
    runner = (project / "src" / "dk_runner.cpp").read_text()
    table = json.loads((data_dir("firmware_templates") / "tflm_ops.json").read_text())["ops"]
    model_ops = list(dict.fromkeys(op["op"] for op in manifest["ops"]))
    calls = re.findall(r"resolver\.(Add\w+)\(\)", runner)
    assert calls == [table[op] for op in model_ops]
    assert f"constexpr int kOpCount = {len(model_ops)};" in runner
    assert "MicroMutableOpResolver<kOpCount>" in runner and "AllOpsResolver" not in runner


def test_arena_is_projection_plus_margin(converted_examples, tmp_path):
    manifest = converted_examples["gestures"]
    board = load_board("esp32dev")
    projection = manifest["arena"]["projections"][board.arena_class]
    project = render(manifest.path, board.id, tmp_path / "default")
    expected = -(-projection * 110 // 1600) * 16
    assert f"#define DK_ARENA_BYTES {expected}\n" in (project / "src" / "dk_config.h").read_text()
    assert expected % 16 == 0 and projection * 110 <= expected * 100 < projection * 110 + 1600
    project = render(manifest.path, board.id, tmp_path / "fixed", arena_size=5000)
    assert "-DDK_ARENA_BYTES=5008" in read_config(project).get(f"env:{board.id}", "build_flags")
    project = render(manifest.path, board.id, tmp_path / "margin", arena_margin=50)
    assert f"#define DK_ARENA_BYTES {-(-projection * 150 // 1600) * 16}\n" in \
        (project / "src" / "dk_config.h").read_text()


def test_max_payload_fills_the_window():
    for window in (64, 256, 512, 4096):
        p = max_payload_for_window(window)
        wire = lambda n: 2 + (n + 8) + (n + 8) // 254 + 1  # noqa: E731
        assert wire(p) <= window < wire(p + 1)


def test_model_data_is_aligned_const_with_hash(converted_examples, tmp_path):
    manifest = converted_examples["sine"]
    project = render(manifest.path, "teensy41", tmp_path / "p")
    text = (project / "src" / "model_data.cpp").read_text()
    assert "alignas(16) const uint8_t g_model_data[] = {" in text
    assert f"const size_t g_model_len = {manifest['model_bytes']};" in text
    body = text.split("g_model_data[] = {")[1].split("};")[0]
    assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body)) == manifest.model_path.read_bytes()
    sha = text.split("g_model_sha256[32] = {")[1].split("};")[0]
    assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", sha)).hex() == manifest.sha256


def test_same_inputs_give_byte_identical_files(converted_examples, tmp_path):
    manifest = converted_examples["gestures"].path
    a = render(manifest, "portenta_h7_m7", tmp_path / "a", arduino_sketch=True)
    b = render(manifest, "portenta_h7_m7", tmp_path / "b", arduino_sketch=True)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    again = render(manifest, "portenta_h7_m7", tmp_path / "a", arduino_sketch=True)  # replaces in place
    assert all((again / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def test_arduino_sketch_folder_has_the_same_code(converted_examples, tmp_path):
    project = render(converted_examples["sine"].path, "nano33ble_sense", tmp_path / "p", arduino_sketch=True)
    sketch = project / "sine"
    assert (sketch / "sine.ino").read_bytes() == (project / "src" / "main.cpp").read_bytes()
    for name in ("dk_protocol.cpp", "dk_runner.cpp", "model_data.cpp", "dk_config.h"):
        assert (sketch / name).read_bytes() == (project / "src" / name).read_bytes()


@pytest.mark.parametrize("name", ["src", "Lib", "test"])
def test_sketch_folder_never_takes_a_platformio_directory(converted_examples, tmp_path, name):
    """A model called "src" must not put src/src.ino (a second setup/loop) into the PlatformIO build."""
    manifest = copy_manifest(converted_examples["sine"], tmp_path / "m", name=name)
    project = render(manifest, "nano33ble_sense", tmp_path / "p", arduino_sketch=True)
    assert sorted(p.name for p in (project / "src").iterdir() if p.suffix == ".ino") == []
    assert (project / f"dk_{name}" / f"dk_{name}.ino").is_file()


@needs_gpp
def test_hostile_names_compile_to_harmless_c(converted_examples, tmp_path):
    """A hostile model and tensor name: model_data.cpp compiles and stores the exact bytes."""
    sine = converted_examples["sine"]
    inputs = [dict(sine["inputs"][0], name='in"); abort(); /*')]
    manifest = copy_manifest(sine, tmp_path / "m", name=HOSTILE_NAME, inputs=inputs)
    project = render(manifest, "virtual", tmp_path / "p", arduino_sketch=False)
    src = project / "src"
    for path in src.glob("*"):  # the raw quote-breaking text survives only inside // comments
        for line in path.read_text().splitlines():
            assert '"; system("' not in line or line.lstrip().startswith("//"), (path.name, line)
    probe = tmp_path / "probe.cpp"
    probe.write_text('#include <stdio.h>\n#include "model_data.h"\n'
                     'int main() { fputs(g_model_name, stdout); return g_n_inputs == 1 ? 0 : 1; }\n')
    exe = tmp_path / "probe"
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-I", str(src), "-o", str(exe),
                    str(probe), str(src / "model_data.cpp"), str(src / "dk_protocol.cpp")],
                   check=True, capture_output=True)
    assert subprocess.run([str(exe)], check=True, capture_output=True).stdout == HOSTILE_NAME.encode()
    subprocess.run(["g++", "-std=c++11", "-fsyntax-only", "-Wall", "-Werror", "-I", str(src),
                    str(src / "main.cpp")], check=True, capture_output=True)
    assert read_config(project).envs() == ["virtual"]


# ---- bad input: one line, exit 2, nothing written --------------------------------------

def _refused(capsys, out: Path, *args):
    code, stdout, err = run_cli(["render", *args, "-o", str(out)], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploykit: error: ") and "Traceback" not in err
    return lines[0]


def test_unknown_board_lists_known_ones(converted_examples, tmp_path, capsys):
    out = tmp_path / "out"
    line = _refused(capsys, out, str(converted_examples["sine"].path), "--board", "uno")
    assert "'uno'" in line and all(b.id in line for b in BOARDS)
    assert not out.exists()


def test_sha_mismatch_is_refused(converted_examples, tmp_path, capsys):
    manifest = copy_manifest(converted_examples["sine"], tmp_path / "m")
    model = manifest.parent / "model.tflite"
    model.write_bytes(model.read_bytes()[:-1] + b"\x01")
    out = tmp_path / "out"
    line = _refused(capsys, out, str(manifest), "--board", "nano33ble_sense")
    assert "sha256" in line
    assert not out.exists()


@pytest.mark.parametrize("changes, words", [
    ({"ops": "FULLY_CONNECTED"}, ("ops",)),
    ({"inputs": None}, ("inputs",)),
    ({"outputs": [{"name": "y", "dtype": "int8", "shape": "1x1"}]}, ("outputs[0]", "shape")),
    ({"arena": []}, ("arena",)),
    ({"arena": {"projections": {"cortex-m-cmsis-nn": None}}}, ("projections",)),
    ({"model_bytes": "2880"}, ("model_bytes",)),
])
def test_damaged_manifest_is_refused(converted_examples, tmp_path, capsys, changes, words):
    """A hand-edited manifest with wrong types: one line naming the key, not a traceback."""
    manifest = copy_manifest(converted_examples["sine"], tmp_path / "m", **changes)
    out = tmp_path / "out"
    line = _refused(capsys, out, str(manifest), "--board", "nano33ble_sense")
    assert all(word in line for word in words), line
    assert not out.exists()


def test_model_too_big_is_refused_with_figures(converted_examples, tmp_path, capsys):
    sine = converted_examples["sine"]
    manifest = copy_manifest(sine, tmp_path / "m")
    model = manifest.parent / "model.tflite"
    model.write_bytes(model.read_bytes() + bytes(2_000_000))
    data = json.loads(manifest.read_text())
    data.update(model_sha256=sha256_file(model), model_bytes=model.stat().st_size)
    manifest.write_text(json.dumps(data))
    out = tmp_path / "out"
    line = _refused(capsys, out, str(manifest), "--board", "nano33ble_sense")
    assert "does not fit" in line and "flash" in line and "983,040" in line
    assert not out.exists()
    line = _refused(capsys, out, str(sine.path), "--board", "nano33ble_sense", "--arena-size", "300000")
    assert "RAM" in line and "262,144" in line
    assert not out.exists()


def test_unwritable_output_is_refused(converted_examples, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "project"
    line = _refused(capsys, out, str(converted_examples["sine"].path), "--board", "teensy41")
    assert str(blocker) in line
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_directory_refusing_new_entries_is_refused(converted_examples, capsys):
    """/proc passes access(W_OK) for root yet refuses new entries: still one line, exit 2."""
    out = Path("/proc/deploykit-render-test")
    line = _refused(capsys, out, str(converted_examples["sine"].path), "--board", "teensy41")
    assert str(out) in line and not out.exists()


def test_non_project_directory_is_not_replaced(converted_examples, tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    _refused(capsys, out, str(converted_examples["sine"].path), "--board", "teensy41")
    assert (out / "precious.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_cli_renders_and_says_where(converted_examples, tmp_path, capsys):
    out = tmp_path / "fw"
    code, stdout, _ = run_cli(["render", str(converted_examples["linear"].path),
                              "--board", "esp32s3_devkitc", "-o", str(out)], capsys)
    assert code == 0 and str(out) in stdout
    assert read_config(out).envs() == ["esp32s3_devkitc"]


def test_per_channel_dense_weights_are_refused(converted_examples, example_files, tmp_path, capsys):
    """TF's default per-channel dense quantization would compute wrongly on the pinned ports."""
    import numpy as np

    from deploykit.model import tf_backend as backend
    t = backend.tf()
    converter = backend._fixed_batch_converter(t, Path(example_files["sine"]["model"]), "keras")
    converter.optimizations = [t.lite.Optimize.DEFAULT]
    converter.representative_dataset = backend._representative(np.load(example_files["sine"]["rep_data"])["x"])
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = t.int8
    model = bytes(converter.convert())
    manifest = copy_manifest(converted_examples["sine"], tmp_path / "m")
    (manifest.parent / "model.tflite").write_bytes(model)
    data = json.loads(manifest.read_text())
    data.update(model_sha256=sha256_file(manifest.parent / "model.tflite"), model_bytes=len(model))
    manifest.write_text(json.dumps(data))
    out = tmp_path / "out"
    line = _refused(capsys, out, str(manifest), "--board", "esp32dev")
    assert "per-channel" in line and "esp32dev" in line
    assert not out.exists()
