"""The one module that runs PlatformIO.

It finds the `pio` command (the platformio package installed with deploykit, else one on
PATH), runs it as an argument list (never a shell), streams every line into a log file
and to an optional callback (the CLI shows it: commands/display.py), and turns PlatformIO's output into
figures (RAM and flash from the size report) or one explained failure: PlatformIO
missing, a package download that failed, a compile error, a RAM or flash overflow, an
upload that found no board, a busy port, a port without permission.

The classifiers are pure functions of the text, so tests feed them captured output
(tests/fixtures/pio/) through a mocked subprocess.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import BadInput, DeviceError, ToolError

INSTALL_HINT = ("install it with `pip install platformio` (it comes with `pip install deploykit`), "
                "or see https://docs.platformio.org/en/latest/core/installation/")

LineSink = Callable[[str], None]
Failure = ToolError | DeviceError


class PioMissing(ToolError):
    """PlatformIO is not installed where deploykit can find it."""


class DownloadFailed(ToolError):
    """PlatformIO could not download a platform, tool or library (offline): the rig, exit 3,
    whether or not ~/.platformio exists yet."""

    def __init__(self, message: str, package: str):
        super().__init__(message)
        self.package = package


class CompileError(ToolError):
    """The compiler rejected the sources."""

    def __init__(self, message: str, errors: list[str], log: Path):
        super().__init__(message)
        self.errors, self.log = errors, log


class Overflow(ToolError):
    """The program does not fit the board's RAM or flash.

    Exit status 1, not the rig's 3: the toolchain worked and measured a model (or arena)
    too big for the board, a regression CI should report as such, like a failed threshold."""

    exit_code = 1

    def __init__(self, message: str, region: str, by_bytes: int):
        super().__init__(message)
        self.region, self.by_bytes = region, by_bytes


class UploadFailed(DeviceError):
    """The uploader could not reach or program the board."""


class PortBusy(UploadFailed):
    """Another program holds the serial port."""


class PortPermission(UploadFailed):
    """The user may not open the serial port."""


class NoBoard(UploadFailed):
    """No board answered on the port."""


@dataclass(frozen=True)
class Sizes:
    """RAM and flash use from PlatformIO's size report (bytes)."""

    ram_used: int | None
    ram_total: int | None
    flash_used: int | None
    flash_total: int | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PioRun:
    """What one PlatformIO invocation printed and how it ended."""

    argv: list[str]
    returncode: int
    output: str
    log: Path


# --------------------------------------------------------------------------- finding pio

def find_pio() -> list[str]:
    """The command that runs PlatformIO: beside our interpreter, as a module, or on PATH."""
    beside = Path(sys.executable).with_name("pio")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    if importlib.util.find_spec("platformio") is not None:
        return [sys.executable, "-m", "platformio"]
    for name in ("pio", "platformio"):
        found = shutil.which(name)
        if found:
            return [found]
    raise PioMissing(f"PlatformIO (`pio`) is not installed; {INSTALL_HINT}")


# --------------------------------------------------------------------------- running pio

def run(args: Iterable[str], log: Path, on_line: LineSink | None = None,
        timeout: float | None = None) -> PioRun:
    """Run `pio ARGS`, stream its merged output into `log` and `on_line`, return it all."""
    args = [str(a) for a in args]
    argv = [*find_pio(), *args]
    log = Path(log)
    with open(log, "w", encoding="utf-8") as sink:
        proc = _start(argv)
        watchdog = _Watchdog(proc, timeout)
        with proc, watchdog:
            try:
                output = _stream(proc, sink, on_line)
            except BaseException:  # Ctrl-C or SIGTERM (see cli.py): stop PlatformIO too, then unwind
                proc.kill()
                raise
            code = proc.wait()
    if watchdog.fired:
        raise ToolError(f"`pio {' '.join(args)}` took longer than {timeout:.0f} s and was stopped; log: {log}")
    if code != 0 and _module_missing(output):
        raise PioMissing(f"PlatformIO is not installed for {argv[0]}; {INSTALL_HINT}")
    return PioRun(argv, code, output, log)


def _start(argv: list[str]) -> subprocess.Popen:
    """Start PlatformIO with stdout and stderr merged, line-buffered, without a shell."""
    env = {**os.environ, "PLATFORMIO_DISABLE_PROGRESSBAR": "true", "PYTHONUNBUFFERED": "1"}
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, text=True,
                                encoding="utf-8", errors="replace", bufsize=1)
    except FileNotFoundError as exc:
        raise PioMissing(f"PlatformIO could not be started ({argv[0]}: not found); {INSTALL_HINT}") from exc


def _stream(proc: subprocess.Popen, sink, on_line: LineSink | None) -> str:
    """Copy every line to the log as it comes (flushed: a killed build keeps its log)."""
    lines = []
    assert proc.stdout is not None  # started with stdout=PIPE
    for line in proc.stdout:
        sink.write(line)
        sink.flush()
        lines.append(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))
    return "".join(lines)


class _Watchdog:
    """Kill a process that runs past `timeout` seconds (None: never), even if it prints nothing."""

    def __init__(self, proc: subprocess.Popen, timeout: float | None):
        self.fired = False
        self._timer = threading.Timer(timeout, self._kill, (proc,)) if timeout else None

    def _kill(self, proc: subprocess.Popen) -> None:
        self.fired = True
        proc.kill()

    def __enter__(self):
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc):
        if self._timer is not None:
            self._timer.cancel()


def _module_missing(output: str) -> bool:
    return "No module named platformio" in output


# --------------------------------------------------------------------------- project facts

def project_envs(project_dir: Path) -> list[str]:
    """The env names of DIR/platformio.ini, read with PlatformIO's own config parser."""
    ini = Path(project_dir) / "platformio.ini"
    if not ini.is_file():
        raise BadInput(f"{project_dir} is not a PlatformIO project (no platformio.ini); "
                       "create one with `deploykit render MANIFEST --board ID -o DIR`")
    from platformio.project.config import ProjectConfig  # the real parser, imported when needed

    try:
        return list(ProjectConfig(str(ini), parse_extra=False).envs())
    except Exception as exc:  # PlatformIO raises its own error types for a broken ini
        raise BadInput(f"{ini} cannot be read by PlatformIO: {str(exc).splitlines()[0]}") from exc


def choose_env(project_dir: Path, board_id: str | None) -> str:
    """The env to build: `board_id` if given (it must exist), else the only env."""
    envs = project_envs(project_dir)
    if board_id is not None:
        if board_id not in envs:
            raise BadInput(f"{project_dir}/platformio.ini has no env {board_id!r} "
                           f"(it has {', '.join(envs) or 'none'}); pass --board with one of them")
        return board_id
    if len(envs) != 1:
        raise BadInput(f"{project_dir}/platformio.ini has {len(envs)} envs "
                       f"({', '.join(envs) or 'none'}); pass --board to pick one")
    return envs[0]


# --------------------------------------------------------------------------- size report

_SIZE = re.compile(r"^(RAM|Flash):\s+\[[= ]*\]\s+[\d.]+%\s+\(used (\d+) bytes from (\d+) bytes\)", re.M)


def parse_sizes(output: str) -> Sizes | None:
    """RAM/flash used and total from PlatformIO's `checkprogsize` lines, None without them."""
    found = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _SIZE.finditer(output)}
    if not found:
        return None
    ram, flash = found.get("RAM", (None, None)), found.get("Flash", (None, None))
    return Sizes(ram[0], ram[1], flash[0], flash[1])


# --------------------------------------------------------------------------- failures

_DOWNLOAD_ERRORS = ("HTTPClientError", "VCSBaseException", "Could not resolve host",
                    "Failed to establish a new connection", "ProxyError", "Name or service not known",
                    "Temporary failure in name resolution", "Read timed out", "ConnectionError",
                    "UnknownPackageError", "Unable to connect")
_INSTALLING = re.compile(r"^(Platform|Tool|Library|Package) Manager: Installing (.+?)\s*$", re.M)
_REGION = re.compile(r"region `([^']+)' overflowed by (\d+) bytes")
_WONT_FIT = re.compile(r"section `([^']+)' will not fit in region `([^']+)'")
_PIO_SIZE = re.compile(r"The (program|data) size \((\d+) bytes\) is greater than maximum allowed \((\d+) bytes\)")
_COMPILER_ERROR = re.compile(r"(^.*:\d+(?::\d+)?: (?:fatal )?error: .*$|^.*\berror: .*$)", re.M)
_REGION_NAMES = {"program": "flash", "data": "RAM"}


def build_failure(run_: PioRun) -> ToolError:
    """Explain why `pio run` failed, from its output."""
    text = run_.output
    for check in (_download_failure, _overflow_failure, _compile_failure):
        err = check(text, run_.log)
        if err is not None:
            return err
    tail = _last_lines(text, 5)
    return ToolError(f"PlatformIO failed (exit {run_.returncode}); full log: {run_.log}\n{tail}")


def _download_failure(text: str, log: Path) -> DownloadFailed | None:
    marker = next((m for m in _DOWNLOAD_ERRORS if m in text), None)
    if marker is None:
        return None
    installing = _INSTALLING.findall(text)
    kind, package = installing[-1] if installing else ("Package", "a package")
    proxy = next((f"{k}={os.environ[k]}" for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
                  if os.environ.get(k)), None)
    where = (f"the proxy {proxy} did not get through" if proxy
             else "this machine looks offline or behind a proxy (set HTTPS_PROXY if you use one)")
    return DownloadFailed(
        f"PlatformIO could not download {kind.lower()} {package} ({marker}): {where}; connect "
        f"once so PlatformIO can cache it in ~/.platformio, or test on the virtual board "
        f"(`deploykit deploy --port virtual`); log: {log}",
        package)


def _overflow_failure(text: str, log: Path) -> Overflow | None:
    regions = _REGION.findall(text)
    if regions:
        region, by = max(regions, key=lambda r: int(r[1]))
        return _overflow(_region_label(region), int(by), log)
    sized = _PIO_SIZE.search(text)
    if sized and sized.group(1) == "program":
        return _overflow("flash", int(sized.group(2)) - int(sized.group(3)), log)
    fit = _WONT_FIT.search(text)
    if fit:
        return _overflow(_region_label(fit.group(2)), 0, log)
    return None


def ram_over_board(sizes: Sizes | None, log: Path) -> Overflow | None:
    """PlatformIO only warns when data exceeds the board's RAM; deploykit refuses it."""
    if sizes and sizes.ram_used is not None and sizes.ram_total and sizes.ram_used > sizes.ram_total:
        return _overflow("RAM", sizes.ram_used - sizes.ram_total, log)
    return None


def _overflow(region: str, by: int, log: Path) -> Overflow:
    amount = f"by {by} bytes" if by > 0 else "(the linker gave no figure)"
    fix = ("lower the arena with `deploykit render --arena-size`, or pick a board with more RAM"
           if region == "RAM" else "use a smaller model, or pick a board with more flash")
    return Overflow(f"the firmware does not fit: {region} overflowed {amount}; {fix}; log: {log}", region, by)


def _region_label(name: str) -> str:
    upper = name.upper()
    if any(k in upper for k in ("RAM", "DATA", "BSS", "SRAM", "DTCM")):
        return "RAM"
    if any(k in upper for k in ("FLASH", "ROM", "TEXT", "IROM")):
        return "flash"
    return name


def _compile_failure(text: str, log: Path) -> CompileError | None:
    errors = [line.strip() for line in _COMPILER_ERROR.findall(text)
              if not line.lstrip().startswith("collect2")][:5]
    if not errors:
        return None
    shown = "\n  ".join(errors)
    return CompileError(f"compile error ({len(errors)} shown, full log: {log}):\n  {shown}", errors, log)


# esptool says "the port is busy or doesn't exist" whatever the cause; the errno it quotes decides.
_BUSY_TEXT = ("Device or resource busy", "Resource busy", "exclusively lock", "Errno 16")
_PERM_TEXT = ("Permission denied", "Errno 13", "Access is denied")
_NOBOARD_TEXT = ("Couldn't find a board", "No device found on", "Please specify `upload_port`",
                 "No serial data received", "Failed to connect", "No such file or directory")


_UPLOAD_STAGE = re.compile(r"^(Looking for upload (port|disk)|Auto-detected: |Using manually specified: |"
                           r"Uploading |Forcing reset using)", re.M)


def upload_failure(run_: PioRun, port: str) -> Failure:
    """Explain why `pio run -t upload` failed: the build before it, or a busy port,
    permission, no board."""
    text = run_.output
    if not _UPLOAD_STAGE.search(text):
        return build_failure(run_)
    if any(m in text for m in _PERM_TEXT):
        return PortPermission(f"permission denied on {port}: add yourself to the dialout group "
                              "(`sudo usermod -aG dialout $USER`, then log in again) or install "
                              f"PlatformIO's udev rules (99-platformio-udev.rules); log: {run_.log}")
    if any(m in text for m in _BUSY_TEXT):
        return PortBusy(f"serial port {port} is busy: another program (a serial monitor, another "
                        f"deploykit run, ModemManager) has it open; close it and retry; log: {run_.log}")
    if any(m in text for m in _NOBOARD_TEXT):
        return NoBoard(f"no board answered on {port}: check the cable (data, not charge-only) and "
                       "`deploykit devices`; double-tap reset to enter the bootloader and retry; "
                       f"log: {run_.log}")
    return UploadFailed(f"upload to {port} failed (exit {run_.returncode}); log: {run_.log}\n"
                        f"{_last_lines(text, 5)}")


def _last_lines(text: str, n: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and not set(line.strip()) <= set("=-*")]
    return "\n".join("  " + line for line in lines[-n:])


# --------------------------------------------------------------------------- commands

def build(project_dir: Path, env: str, log: Path, on_line: LineSink | None = None,
          timeout: float | None = None) -> tuple[Sizes | None, PioRun]:
    """`pio run -e ENV -d DIR`; return the sizes or raise the explained failure."""
    result = run(["run", "-e", env, "-d", str(project_dir)], log, on_line, timeout)
    if result.returncode != 0:
        raise build_failure(result)
    sizes = parse_sizes(result.output)
    over = ram_over_board(sizes, result.log)
    if over is not None:
        raise over
    return sizes, result


def upload(project_dir: Path, env: str, port: str, log: Path, on_line: LineSink | None = None,
           timeout: float | None = 600) -> PioRun:
    """`pio run -e ENV -t upload --upload-port PORT -d DIR`; raise the explained failure."""
    result = run(["run", "-e", env, "-t", "upload", "--upload-port", port, "-d", str(project_dir)],
                 log, on_line, timeout)
    if result.returncode != 0:
        raise upload_failure(result, port)
    return result


# --------------------------------------------------------------------------- project level

@dataclass(frozen=True)
class BuildResult:
    """A built project: its env, the sizes PlatformIO reported, where the log is."""

    project_dir: Path
    env: str
    sizes: Sizes | None
    log: Path

    def to_dict(self) -> dict:
        return {"env": self.env, "log": str(self.log), "sizes": self.sizes.to_dict() if self.sizes else None}


def build_project(project_dir, board_id: str | None = None, on_line: LineSink | None = None,
                  timeout: float | None = None) -> BuildResult:
    """Build a rendered project; keep DIR/build.log and record the sizes in DIR/build.json."""
    from deploykit.atomic import write_json

    project_dir = Path(project_dir)
    env = choose_env(project_dir, board_id)
    log = project_dir / "build.log"
    sizes, _ = build(project_dir, env, log, on_line, timeout)
    result = BuildResult(project_dir, env, sizes, log)
    write_json(project_dir / "build.json", result.to_dict())
    return result
