"""Opt-in (`-m toolchain`, needs $DEPLOYKIT_TFLM_DIR): the rendered firmware compiled, linked and run.

The tflite-micro wheel carries no headers, so nothing else in the suite compiles dk_runner.cpp
or the main files. Given a TFLM source tree whose third-party headers are already downloaded
(tensorflow/lite/micro/tools/make/downloads/{flatbuffers,gemmlowp,ruy}), these tests

- render the examples for every board, plain and with --diagnostics, and compile every
  rendered source file that builds on the host with -Wall -Wextra -Werror: host g++ for every
  board, arm-none-eabi-g++ (Cortex-M4F) for the Cortex-M4 boards where it is installed;
- build the host program (main/host.cpp.j2) linked with TFLM compiled from the tree (reference
  kernels, only the ones the rendered op resolver registers) and run it under
  `deploykit hil run` against TFLM on the host: outputs exact, arena reported.

The TFLM objects are cached, keyed by the tree, under $DEPLOYKIT_TFLM_BUILD_DIR (default
~/.cache/deploykit-tflm-build); nothing of TFLM is written into the repository. The Arduino
mains need an Arduino core and the boards' pinned TFLM ports, so they are not built here
(tests/test_render.py syntax-checks them against stand-ins).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import tty
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

TFLM_VARIABLE = "DEPLOYKIT_TFLM_DIR"
CACHE_VARIABLE = "DEPLOYKIT_TFLM_BUILD_DIR"
EXAMPLES = ("sine", "gestures", "linear")
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
CORTEX_M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
WORKERS = 2
# How TFLM's own Makefile compiles the library for a host (tools/make/Makefile COMMON_FLAGS, CXXFLAGS).
# TF_LITE_STATIC_MEMORY changes TfLiteTensor's layout: the firmware is compiled with it too.
TFLM_DEFINES = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON"]
TFLM_FLAGS = ["-std=c++17", "-O1", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
              "-ffunction-sections", "-fdata-sections", *TFLM_DEFINES, "-DTF_LITE_USE_CTIME"]
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
# Not part of the library a firmware links: tests and their helpers, and debug_log.cc, the
# platform file the firmware replaces (main/debug_log.j2 defines DebugLog and DebugVsnprintf).
NOT_LIBRARY = re.compile(r"(_test\.cc|/debug_log\.cc|/test_helpers?\w*\.cc|/fake_micro_context\.cc|"
                         r"/mock_micro_graph\.cc|/kernel_runner\.cc|/conv_test_common\.cc|"
                         r"_generated_data\.cc|/tensorflow/lite/array\.cc)$")

pytestmark = [
    pytest.mark.toolchain, pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get(TFLM_VARIABLE),
                       reason=f"{TFLM_VARIABLE} is unset: set it to a TFLM source tree whose third-party headers "
                              f"are downloaded to compile and run the rendered firmware (-m toolchain)"),
]


# ---- compiling -------------------------------------------------------------------------

@dataclass(frozen=True)
class Compile:
    """One `CXX ARGS -c SOURCE -o OBJECT`; `what` names it in failures."""

    cxx: str
    args: tuple[str, ...]
    source: Path
    output: Path
    what: str


def _run_compile(job: Compile) -> tuple[Compile, str | None]:
    """Compile to a temporary name, then rename: a cached object is always a whole one."""
    job.output.parent.mkdir(parents=True, exist_ok=True)
    partial = job.output.with_suffix(f".{os.getpid()}.part")
    proc = subprocess.run([job.cxx, *job.args, "-c", str(job.source), "-o", str(partial)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        return job, f"{job.what}: {job.cxx} {' '.join(job.args)} -c {job.source}\n{proc.stderr}"
    partial.replace(job.output)
    return job, (proc.stderr or None) and f"{job.what} (warnings without -Werror):\n{proc.stderr}"


def compile_all(jobs: list[Compile]) -> list[str]:
    """Compile what is not built yet, WORKERS at a time; the error text of each failure."""
    todo = [j for j in jobs if not j.output.is_file()]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [err for _, err in pool.map(_run_compile, todo) if err]


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _compiler_id(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


# ---- the TFLM library, from the user's tree ----------------------------------------------

class TflmTree:
    """A TFLM source tree (read only) and the object cache keyed by it."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        dirs = [root, root / DOWNLOADS, root / DOWNLOADS / "gemmlowp", root / DOWNLOADS / "flatbuffers" / "include",
                root / DOWNLOADS / "ruy"]
        self.includes = [f"-I{d}" for d in dirs]
        # The firmware sees TFLM as a system library: -Werror judges the rendered files, not
        # TFLM's own headers (they warn under -Wextra; TFLM builds with -Wno-unused-parameter).
        self.system_includes = [x for d in dirs for x in ("-isystem", str(d))]
        micro = root / "tensorflow/lite/micro"
        core = [*micro.glob("*.cc"), *micro.glob("arena_allocator/*.cc"), *micro.glob("memory_planner/*.cc"),
                *micro.glob("tflite_bridge/*.cc")]
        core += [p for p in (root / "tensorflow").rglob("*.cc")
                 if "lite/micro" not in p.as_posix() and "lite/experimental" not in p.as_posix()]
        self.core = sorted(p for p in core if not NOT_LIBRARY.search(p.as_posix()))
        self.kernels = sorted(p for p in (micro / "kernels").glob("*.cc") if not NOT_LIBRARY.search(p.as_posix()))
        stamp = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in (*self.core, *self.kernels)]
        self.objects = cache / _digest(root.resolve(), stamp, _compiler_id("g++"), TFLM_FLAGS)
        self.resolver_h = (micro / "micro_mutable_op_resolver.h").read_text(encoding="utf-8")

    def debug_log_signature(self) -> str:
        """'va_list' or 'string': the DebugLog this tree declares (tensorflow/lite/micro/debug_log.h)."""
        header = (self.root / "tensorflow/lite/micro/debug_log.h").read_text(encoding="utf-8")
        return "va_list" if re.search(r"void\s+DebugLog\([^)]*va_list", header) else "string"

    def kernels_for(self, methods: list[str]) -> list[Path] | None:
        """The kernel sources the resolver's Add methods need, or None when one cannot be told."""
        registers = dict(re.findall(r"TfLiteStatus\s+(Add\w+)\(\s*const\s+TFLMRegistration&\s+registration\s*="
                                    r"\s*(?:tflite::)?(Register_\w+)\(\)", self.resolver_h))
        names = {"kernel_util.cc", "micro_tensor_utils.cc"}
        texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in self.kernels}
        for method in methods:
            if method not in registers:
                return None
            found = [p for p, text in texts.items()
                     if re.search(rf"TFLMRegistration\s+{registers[method]}\s*\(\s*\)\s*\{{", text)]
            if not found:
                return None
            for p in found:
                names |= {p.name, p.name.replace(".cc", "_common.cc")}
        return [p for p in self.kernels if p.name in names]

    def jobs(self, sources: list[Path]) -> list[Compile]:
        args = (*TFLM_FLAGS, *self.includes)
        return [Compile("g++", args, p, self.objects / p.relative_to(self.root).with_suffix(".o"),
                        f"TFLM {p.relative_to(self.root)}") for p in sources]

    def archive(self, kernels: list[Path], out: Path) -> Path:
        """Compile the core and these kernels (cached), and archive them into `out`."""
        jobs = self.jobs([*self.core, *kernels])
        errors = compile_all(jobs)
        errors = [e for e in errors if "warnings without" not in e]
        assert not errors, "the TFLM tree does not compile:\n" + "\n".join(errors)
        out.unlink(missing_ok=True)
        subprocess.run(["ar", "rcs", str(out), *(str(j.output) for j in jobs)], check=True)
        return out


@pytest.fixture(scope="module")
def tflm(tmp_path_factory) -> TflmTree:
    root = Path(os.environ[TFLM_VARIABLE]).expanduser()
    needed = ["tensorflow/lite/micro/micro_interpreter.h", f"{DOWNLOADS}/flatbuffers/include/flatbuffers/flatbuffers.h",
              f"{DOWNLOADS}/gemmlowp/fixedpoint/fixedpoint.h"]
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:
        pytest.fail(f"{TFLM_VARIABLE}={root} is not a TFLM tree with its downloads in place (missing {missing[0]}); "
                    f"fetch tflite-micro and its third-party headers (tools/make/downloads) there")
    cache = Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "deploykit-tflm-build").expanduser()
    return TflmTree(root, cache)


# ---- the rendered projects -----------------------------------------------------------------

@pytest.fixture(scope="module")
def projects(converted_examples, tflm, tmp_path_factory) -> dict:
    """(board id, example, diagnostics) -> rendered project, for every board; the host board's
    DebugLog is rendered with the signature the tree declares (its board file copied, debug_log set)."""
    from deploykit.firmware.boards import all_boards, load_board
    from deploykit.firmware.render import render
    root = tmp_path_factory.mktemp("toolchain")
    boards_dir = root / "boards"
    boards_dir.mkdir()
    for board in all_boards():
        if board.adapter == "host":
            text = board.path.read_text(encoding="utf-8")
            text = re.sub(r'^debug_log = "\w+"', f'debug_log = "{tflm.debug_log_signature()}"', text, flags=re.M)
            (boards_dir / board.path.name).write_text(text, encoding="utf-8")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPLOYKIT_BOARDS_PATH", str(boards_dir))
        for board in all_boards():
            for example in EXAMPLES:
                for diag in (False, True):
                    out[board.id, example, diag] = render(converted_examples[example].path, board.id,
                                                          root / f"{board.id}-{example}-{int(diag)}", diagnostics=diag)
        assert load_board("virtual").debug_log == tflm.debug_log_signature()
    return out


def project_flags(project: Path) -> list[str]:
    """The rendered platformio.ini's compile flags (-D, -std), as PlatformIO reads them."""
    from platformio.project.config import ProjectConfig
    config = ProjectConfig(str(project / "platformio.ini"), parse_extra=False, expand_interpolations=True)
    flags = config.get(f"env:{config.envs()[0]}", "build_flags")
    return [f for f in flags if f.startswith(("-D", "-std="))]


def firmware_jobs(tflm: TflmTree, project: Path, board, cxx: str, arch: list[str], cache: Path,
                  sources: list[Path]) -> list[Compile]:
    """Compile the rendered `sources` of one project; objects keyed by every rendered file and flag."""
    flags = project_flags(project)
    std = [f for f in flags if f.startswith("-std=")] or ["-std=gnu++17"]
    args = (*std, "-O1", *WARNINGS, *arch, *TFLM_DEFINES, *[f for f in flags if f.startswith("-D")],
            f"-I{project / 'src'}", f"-I{project / 'include'}", *tflm.system_includes)
    headers = sorted(p for d in ("src", "include") for p in (project / d).glob("*") if p.is_file())
    key = _digest(tflm.objects.name, _compiler_id(cxx), args[:-len(tflm.system_includes)],
                  *(p.read_bytes() for p in headers))
    return [Compile(cxx, args, src, cache / key / f"{src.stem}.o", f"{board.id} {project.name} {src.name} ({cxx})")
            for src in sources]


# ---- tests -------------------------------------------------------------------------------------

def test_every_rendered_source_compiles_without_warnings(projects, tflm, tmp_path_factory):
    """Every board's runner, protocol core and model data, plain and --diagnostics (profiler and
    layer-diff code), and the host main: no warning under -Wall -Wextra -Werror, on the host and
    for a Cortex-M4F where arm-none-eabi-g++ is installed."""
    from deploykit.firmware.boards import load_board
    cache = tflm.objects / "firmware"
    arm = shutil.which("arm-none-eabi-g++")
    jobs = []
    for (board_id, _example, _diag), project in projects.items():
        board = load_board(board_id)
        src = project / "src"
        sources = [src / "dk_runner.cpp", src / "dk_protocol.cpp", src / "model_data.cpp"]
        if board.adapter == "host":
            sources.append(src / "main.cpp")
        jobs += firmware_jobs(tflm, project, board, "g++", [], cache, sources)
        if arm and board.core.startswith("cortex-m4"):
            jobs += firmware_jobs(tflm, project, board, "arm-none-eabi-g++", CORTEX_M4, cache, sources[:3])
    started = time.monotonic()
    errors = compile_all(jobs)
    assert not errors, "\n".join(errors)
    print(f"\n{len(jobs)} firmware compiles ({len({j.output for j in jobs})} distinct) in "
          f"{time.monotonic() - started:.0f} s")
    if arm:
        _print_text_sizes([j for j in jobs if j.cxx == "arm-none-eabi-g++"])


def _print_text_sizes(jobs: list[Compile]) -> None:
    """Cortex-M4 .text bytes per rendered file (arm-none-eabi-size), for the report."""
    size = shutil.which("arm-none-eabi-size")
    if not size:
        return
    for job in jobs:
        out = subprocess.run([size, str(job.output)], capture_output=True, text=True, check=True).stdout
        text = int(out.splitlines()[1].split()[0])
        print(f"  {job.what.split(' (')[0]}: text {text} B")


def build_host_program(tflm: TflmTree, project: Path, out: Path) -> Path:
    """The host adapter's program: its rendered sources, TFLM from the tree, plain `g++` link
    (no --gc-sections: every symbol the objects name must be defined)."""
    from deploykit.firmware.boards import load_board
    src = project / "src"
    sources = sorted(src.glob("*.cpp"))
    jobs = firmware_jobs(tflm, project, load_board("virtual"), "g++", [], tflm.objects / "firmware", sources)
    errors = compile_all(jobs)
    assert not errors, "\n".join(errors)
    methods = re.findall(r"resolver\.(Add\w+)\(\)", (src / "dk_runner.cpp").read_text())
    kernels = tflm.kernels_for(methods)
    link = ["g++", "-o", str(out), *(str(j.output) for j in jobs)]
    if kernels is not None:
        lib = tflm.archive(kernels, out.parent / "libtflm-selected.a")
        if subprocess.run([*link, str(lib), "-lm"], capture_output=True, text=True).returncode == 0:
            return out
    lib = tflm.archive(tflm.kernels, out.parent / "libtflm.a")  # fall back on every reference kernel
    proc = subprocess.run([*link, str(lib), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, f"linking the host program failed:\n{proc.stderr}"
    return out


def hil_run_host_program(exe: Path, manifest, outdir: Path, *extra) -> dict:
    """`deploykit hil run` against the host program on a pty: its stdin/stdout is the master."""
    import json

    from conftest import run_cli
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([str(exe)], stdin=master, stdout=master, stderr=subprocess.PIPE)
    try:
        code = run_cli(["hil", "run", "-m", manifest.path, "-p", os.ttyname(slave), "--board", "virtual",
                        "-o", outdir, "--quiet", "--no-resume", *extra])
    finally:
        os.close(slave)
        os.close(master)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    report = json.loads((outdir / "report.json").read_text())
    assert code == 0, (code, proc.stderr.read().decode(errors="replace") if proc.stderr else "")
    return report


@pytest.mark.parametrize("example", EXAMPLES)
def test_host_program_matches_tflm_on_the_host(projects, tflm, converted_examples, tmp_path, example):
    """The host build of the rendered firmware runs the test set under `hil run`: every output
    equals TFLM on the host, and HELLO reports the arena TFLM used."""
    started = time.monotonic()
    exe = build_host_program(tflm, projects["virtual", example, False], tmp_path / "dk_host")
    built = time.monotonic() - started
    report = hil_run_host_program(exe, converted_examples[example], tmp_path / "hil", "--min-agreement", "1.0")
    agreement = report["agreement"]["tflm_host"]
    assert agreement["exact_fraction"] == 1.0 and agreement["samples"] > 0
    arena = report["arena"]
    assert 0 < arena["used"] <= arena["configured"]
    print(f"\n{example}: built in {built:.0f} s; agreement {agreement['exact_fraction']} over "
          f"{agreement['samples']} samples; arena used {arena['used']} of {arena['configured']} B")


def test_host_program_with_diagnostics_times_and_dumps_every_operator(projects, tflm, converted_examples, tmp_path):
    """The --diagnostics host build answers per-operator timing and the layer-by-layer dump,
    and its layers agree with TFLM on the host."""
    exe = build_host_program(tflm, projects["virtual", "gestures", True], tmp_path / "dk_host_diag")
    report = hil_run_host_program(exe, converted_examples["gestures"], tmp_path / "hil", "--limit", "20",
                                  "--op-timing", "2", "--layer-diff", "0")
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    from deploykit.model.tflite_model import parse
    n_ops = len(parse(converted_examples["gestures"].model_bytes(), origin="gestures").operators)
    timing = report["op_timing"]
    assert len(timing["ops"]) == n_ops and timing["timer"] == "micros" and timing["simulated"]
    diff = report["layer_diff"]["records"]
    assert [r["record"] for r in diff] == [0] and len(diff[0]["ops"]) == n_ops
    assert diff[0]["first_diverging"] is None and all(o["max_abs_steps"] == 0 for o in diff[0]["ops"])
    print(f"\ngestures --diagnostics: {n_ops} operators timed ({timing['total_cycles_p50']} cycles p50, "
          f"micros x clock) and compared layer by layer: none diverges")
