"""What the toolchain build (tests/test_toolchain.py) found, checked without a TFLM tree.

The rendered mains are compiled with the host g++ and run against stand-ins at the edge only:
a TFLM debug_log.h of either signature, a runner that logs the way TFLM's micro_log.cc does,
an Arduino.h whose Serial writes to stdout, and memory standing in for the DWT registers.
Their output is decoded as protocol frames by deploykit.protocol.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploykit.firmware.boards import all_boards, load_board
from deploykit.firmware.render import _environment, render
from deploykit.firmware.resources import data_dir
from deploykit.protocol.framing import Frame, FrameDecoder
from deploykit.protocol.messages import Hello, Log, decode_message

needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="needs the host g++ (CI installs it)")
CXX = ["g++", "-std=gnu++17", "-O1", "-Wall", "-Wextra", "-Werror"]

# tensorflow/lite/micro/debug_log.h as TFLM declares it: up to the pinned Arduino ports' TFLM,
# and in current TFLM (tflite-micro 90b983c, the tree the host wheel matches).
DEBUG_LOG_H = {
    "string": 'extern "C" void DebugLog(const char* s);\n',
    "va_list": '#include <stdarg.h>\n#include <stddef.h>\nextern "C" void DebugLog(const char* format, va_list args);\n'
               'extern "C" int DebugVsnprintf(char* buffer, size_t buf_size, const char* format, va_list vlist);\n',
}
# A runner logging as TFLM does: MicroPrintf -> DebugLog (formatted by the firmware with the
# va_list signature), MicroSnprintf -> DebugVsnprintf (defined beside DebugLog by the platform).
STUB_RUNNER = r"""
#include <stdarg.h>
#include <stdio.h>
#include "dk_runner.h"
#include "tensorflow/lite/micro/debug_log.h"
namespace dk {
static bool g_cycles = true;
void RunnerSetClock(ClockFn, bool counts_cycles) { g_cycles = counts_cycles; }
#ifdef STUB_VA_LIST
static void Print(const char* format, ...) {
  va_list args;
  va_start(args, format);
  DebugLog(format, args);
  va_end(args);
}
static int Snprintf(char* buf, size_t n, const char* format, ...) {
  va_list args;
  va_start(args, format);
  const int len = DebugVsnprintf(buf, n, format, args);
  va_end(args);
  return len;
}
bool RunnerInit(void) {
  Print("arena %d of %d bytes\n", 42, 64);
  char text[32];
  Snprintf(text, sizeof(text), "op %s", "FULLY_CONNECTED");
  Print("%s; counts_cycles=%d\n", text, g_cycles ? 1 : 0);
  return true;
}
#else
bool RunnerInit(void) {
  char text[64];
  snprintf(text, sizeof(text), "arena 42 of 64 bytes\nop FULLY_CONNECTED; counts_cycles=%d\n", g_cycles ? 1 : 0);
  DebugLog(text);
  return true;
}
#endif
uint32_t RunnerArenaUsed(void) { return 42; }
uint32_t RunnerArenaConfigured(void) { return 64; }
const Diagnostics* RunnerDiagnostics(void) { return nullptr; }
int RunnerInfer(void*, const uint8_t*, size_t, uint8_t*, size_t, uint32_t*, uint32_t*) { return 1; }
}  // namespace dk
"""
EXPECTED_LOGS = ["arena 42 of 64 bytes", "op FULLY_CONNECTED; counts_cycles={cycles}"]


def messages(stdout: bytes) -> list:
    frames = [f for f in FrameDecoder().feed(stdout) if isinstance(f, Frame)]
    return [decode_message(f) for f in frames]


def rendered(converted_examples, tmp_path: Path, board_id: str, **changes) -> Path:
    """sine rendered for `board_id`, its board file copied with `changes` (key = TOML value)."""
    boards = tmp_path / "boards"
    boards.mkdir(exist_ok=True)
    text = load_board(board_id).path.read_text(encoding="utf-8")
    for key, value in changes.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    (boards / f"{board_id}.toml").write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPLOYKIT_BOARDS_PATH", str(boards))
        return render(converted_examples["sine"].path, board_id, tmp_path / f"p-{board_id}")


def project_defines(project: Path) -> list[str]:
    from platformio.project.config import ProjectConfig
    config = ProjectConfig(str(project / "platformio.ini"), parse_extra=False, expand_interpolations=True)
    return [f for f in config.get(f"env:{config.envs()[0]}", "build_flags") if f.startswith("-D")]


def stubs(tmp_path: Path, signature: str) -> Path:
    """A stand-in TFLM header folder declaring DebugLog with `signature`, and the stub runner."""
    root = tmp_path / f"stub-{signature}"
    (root / "tensorflow/lite/micro").mkdir(parents=True)
    (root / "tensorflow/lite/micro/debug_log.h").write_text(DEBUG_LOG_H[signature])
    (root / "stub_runner.cpp").write_text(STUB_RUNNER)
    return root


def build(project: Path, stub: Path, exe: Path, *extra: str, signature: str) -> subprocess.CompletedProcess:
    """Compile the rendered main, protocol core and model data with the stub runner; plain link."""
    src = project / "src"
    sources = [src / "main.cpp", src / "dk_protocol.cpp", src / "model_data.cpp", stub / "stub_runner.cpp", *extra]
    macros = ["-DSTUB_VA_LIST"] if signature == "va_list" else []
    cmd = [*CXX, *project_defines(project), *macros, f"-I{src}", f"-I{stub}", f"-I{project / 'include'}"]
    return subprocess.run([*cmd, "-o", str(exe), *map(str, sources)], capture_output=True, text=True)


@needs_gpp
@pytest.mark.parametrize("signature", ["va_list", "string"])
def test_host_debug_log_formats_tflm_text_into_log_frames(converted_examples, tmp_path, signature):
    """The host main's DebugLog has the board file's signature, formats TFLM's text (va_list:
    format + arguments) into LOG frames, and links without --gc-sections (DebugVsnprintf)."""
    project = rendered(converted_examples, tmp_path, "virtual", debug_log=f'"{signature}"')
    proc = build(project, stubs(tmp_path, signature), tmp_path / "host", signature=signature)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(tmp_path / "host")], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    got = messages(run.stdout)
    assert any(isinstance(m, Hello) for m in got), got
    assert [m.text for m in got if isinstance(m, Log)] == [t.format(cycles=0) for t in EXPECTED_LOGS]


@needs_gpp
@pytest.mark.parametrize("board_says, tflm_declares", [("string", "va_list"), ("va_list", "string")])
def test_a_debug_log_of_the_wrong_signature_does_not_compile(converted_examples, tmp_path, board_says,
                                                             tflm_declares):
    """A board file whose debug_log differs from the TFLM it builds with is a compile error
    (extern "C" would otherwise link, and LOG frames would carry bare format strings)."""
    project = rendered(converted_examples, tmp_path, "virtual", debug_log=f'"{board_says}"')
    stub = stubs(tmp_path, tflm_declares)
    src = project / "src"
    proc = subprocess.run([*CXX, "-fsyntax-only", *project_defines(project), f"-I{src}", f"-I{stub}",
                           str(src / "main.cpp")], capture_output=True, text=True)
    assert proc.returncode != 0 and "DebugLog" in proc.stderr, proc.stderr


def test_every_board_renders_the_debug_log_its_port_declares(converted_examples, tmp_path):
    """Both pinned ports (Chirale_TensorFlowLite 2.0.0, the Teensy branch 25b752e) declare
    DebugLog(const char* s) in src/tensorflow/lite/micro/debug_log.h; the Arduino sketch wraps it."""
    signatures = {"string": "(const char* s)", "va_list": "(const char* format, va_list args)"}
    for board in all_boards():
        assert board.debug_log == "string", board.id
        main = (render(converted_examples["sine"].path, board.id, tmp_path / board.id) / "src/main.cpp").read_text()
        symbol = "__wrap_DebugLog" if board.adapter == "arduino" else "DebugLog"
        assert f'extern "C" void {symbol}{signatures[board.debug_log]}' in main, board.id
        assert '#include "tensorflow/lite/micro/debug_log.h"' in main  # the port's declaration checks it


# ---- timers -------------------------------------------------------------------------------

# Memory standing in for the DWT/DEMCR registers: CYCCNT reads a counter that stands still
# (as under an emulator) or advances; every write is recorded.
FAKE_SCS = r"""
#pragma once
#include <stdint.h>
#include <stdio.h>
struct FakeScs {
  uint32_t regs[4] = {0, 0, 0, 0};  // DEMCR, DWT_CTRL, DWT_CYCCNT, DWT_LAR
  bool running = false;
  int cyccnt_writes = 0;
};
extern FakeScs g_scs;
struct FakeReg {
  unsigned long address;
  uint32_t& slot() const {
    return g_scs.regs[address == 0xE000EDFCUL ? 0 : address == 0xE0001000UL ? 1 : address == 0xE0001004UL ? 2 : 3];
  }
  operator uint32_t() const {
    if (address == 0xE0001004UL && g_scs.running) slot() += 1000;
    return slot();
  }
  FakeReg& operator=(uint32_t v) {
    if (address == 0xE0001004UL) ++g_scs.cyccnt_writes;
    slot() = v;
    return *this;
  }
};
#define DK_SCS_REG(address) (FakeReg{address})
"""
FAKE_ARDUINO_H = r"""
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
inline unsigned long micros() { static unsigned long t = 5000; return t += 3; }
struct FakeSerial {
  void begin(unsigned long) {}
  int available() { return 0; }
  int read() { return -1; }
  size_t write(const uint8_t* d, size_t n) { return fwrite(d, 1, n, stdout); }
  void flush() { fflush(stdout); }
};
extern FakeSerial Serial;
struct FakeEsp { uint32_t getCycleCount(); };
extern FakeEsp ESP;
"""
TIMER_DRIVER = r"""
#include "dk_spec.h"
#include "Arduino.h"
#include "fake_scs.h"
FakeScs g_scs;
FakeSerial Serial;
FakeEsp ESP;
static uint32_t g_fake_count = 0;
static bool g_count_runs = false;
uint32_t FakeEsp::getCycleCount() { return g_count_runs ? (g_fake_count += 1000) : 0; }
uint32_t esp_cpu_get_cycle_count(void) { return ESP.getCycleCount(); }
#include "timer.h"
int main(int argc, char**) {
  g_scs.running = g_count_runs = argc > 1;
  DkTimerBegin();
  const uint32_t a = DkTimerNow(), b = DkTimerNow();
  printf("kind=%d cycles=%d step=%u cyccnt_writes=%d demcr=%08x ctrl=%08x\n", static_cast<int>(DkTimerKind()),
         DkTimerCountsCycles() ? 1 : 0, static_cast<unsigned>(b - a), g_scs.cyccnt_writes,
         static_cast<unsigned>(g_scs.regs[0]), static_cast<unsigned>(g_scs.regs[1]));
  return 0;
}
"""
CYCLE_TIMERS = {"dwt": 1, "ccount": 2, "esp_cpu": 3}   # timer template -> dk::TimerKind it reports when running


@needs_gpp
@pytest.mark.parametrize("timer", sorted(CYCLE_TIMERS))
def test_a_cycle_counter_that_does_not_run_falls_back_to_micros(tmp_path, timer):
    """A counter reading 0 (an emulator, a core without it): micros() times, HELLO says kMicros;
    a running counter is used as is. The DWT start-up sets TRCENA and CYCCNTENA, never CYCCNT."""
    (tmp_path / "timer.h").write_text(_environment().get_template(f"timers/{timer}.h.j2").render({}))
    (tmp_path / "fake_scs.h").write_text(FAKE_SCS)
    (tmp_path / "Arduino.h").write_text(FAKE_ARDUINO_H)
    (tmp_path / "esp_idf_version.h").write_text("#define ESP_IDF_VERSION_MAJOR 5\n")
    (tmp_path / "esp_cpu.h").write_text("#include <stdint.h>\nuint32_t esp_cpu_get_cycle_count(void);\n")
    (tmp_path / "driver.cpp").write_text(TIMER_DRIVER)
    exe = tmp_path / "driver"
    subprocess.run([*CXX, f"-I{tmp_path}", f"-I{data_dir('firmware_templates') / 'src'}", "-o", str(exe),
                    str(tmp_path / "driver.cpp")], check=True, capture_output=True, text=True)
    stuck = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    running = subprocess.run([str(exe), "run"], capture_output=True, text=True, check=True).stdout
    assert stuck.startswith("kind=0 cycles=0 step=3 cyccnt_writes=0"), stuck    # micros(): 3 per call here
    assert running.startswith(f"kind={CYCLE_TIMERS[timer]} cycles=1 step=1000 cyccnt_writes=0"), running
    if timer == "dwt":
        assert "demcr=01000000 ctrl=00000001" in running  # TRCENA, CYCCNTENA


@needs_gpp
@pytest.mark.parametrize("counter_runs", [False, True])
def test_arduino_hello_announces_the_timer_that_runs(converted_examples, tmp_path, counter_runs):
    """The sketch (DWT board) says kMicros in HELLO and hands the runner a microsecond clock
    when CYCCNT stands still; kDwt and cycles when it runs. TFLM's DebugLog reaches LOG frames
    through -Wl,--wrap=DebugLog."""
    project = rendered(converted_examples, tmp_path, "nano33ble_sense")
    stub = stubs(tmp_path, "string")
    (stub / "Arduino.h").write_text(FAKE_ARDUINO_H)
    (stub / "Chirale_TensorFlowLite.h").write_text("")
    (stub / "fake_scs.h").write_text(FAKE_SCS)
    (stub / "board.cpp").write_text(
        '#include "Arduino.h"\n#include "fake_scs.h"\nFakeScs g_scs;\nFakeSerial Serial;\nFakeEsp ESP;\n'
        'extern "C" void DebugLog(const char* s) { fputs(s, stderr); }  // the port\'s, wrapped away\n'
        'void setup();\nvoid loop();\n'
        f'int main() {{ g_scs.running = {"true" if counter_runs else "false"}; setup(); loop(); return 0; }}\n')
    proc = build(project, stub, tmp_path / "sketch", stub / "board.cpp", "-include", str(stub / "fake_scs.h"),
                 "-Wl,--wrap=DebugLog", signature="string")
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(tmp_path / "sketch")], capture_output=True, timeout=10)
    got = messages(run.stdout)
    hello = [m for m in got if isinstance(m, Hello)]
    assert len(hello) == 1 and hello[0].timer.name == ("dwt" if counter_runs else "micros"), got
    assert [m.text for m in got if isinstance(m, Log)] == [t.format(cycles=int(counter_runs)) for t in EXPECTED_LOGS]
    assert run.stderr == b""  # nothing reached the port's own DebugLog


def test_teensy_ini_keeps_its_ports_example_dependencies_out(converted_examples, tmp_path):
    """The Teensy port's library.properties depends on ArduinoBLE and Arduino_LSM9DS1 (for its
    magic_wand example): PlatformIO may install them; lib_ignore keeps them out of the build."""
    from platformio.project.config import ProjectConfig
    for board_id, ignored in (("teensy41", ["ArduinoBLE", "Arduino_LSM9DS1"]), ("nano33ble_sense", None)):
        project = render(converted_examples["sine"].path, board_id, tmp_path / board_id)
        config = ProjectConfig(str(project / "platformio.ini"), parse_extra=False, expand_interpolations=True)
        env = f"env:{board_id}"
        if ignored:
            assert config.get(env, "lib_ignore") == ignored
        else:
            assert not config.has_option(env, "lib_ignore")
