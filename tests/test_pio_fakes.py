"""A fake `pio` process for tests: replays captured PlatformIO output (tests/fixtures/pio/).

Only `subprocess.Popen` is replaced, the edge where deploykit/toolchain/pio.py meets PlatformIO;
everything above it (streaming, logging, parsing, explaining) runs for real. This module
holds no tests.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "pio"


def captured(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


class FakeProcess:
    """What Popen returns: a stdout to iterate and an exit status."""

    def __init__(self, output: str, returncode: int, on_exit=None):
        self.stdout = io.StringIO(output)
        self.returncode = returncode
        self._on_exit = on_exit

    def wait(self, timeout=None):
        if self._on_exit is not None:
            self._on_exit()
            self._on_exit = None
        return self.returncode

    def kill(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakePio:
    """Popen stand-in answering each `pio` call from a queue of (fixture, exit, hook)."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.queue: list[tuple[str, int, object]] = []

    def then(self, fixture: str, returncode: int, on_exit=None) -> FakePio:
        self.queue.append((fixture, returncode, on_exit))
        return self

    def __call__(self, argv, **kwargs):
        if not _is_pio(argv):  # someone else's subprocess (a library helper): run it for real
            return _REAL_POPEN(argv, **kwargs)
        assert "shell" not in kwargs, "PlatformIO must never run through a shell"
        assert isinstance(argv, list)
        self.calls.append(list(argv))
        fixture, code, on_exit = self.queue.pop(0)
        return FakeProcess(captured(fixture), code, on_exit)


_REAL_POPEN = subprocess.Popen


def _is_pio(argv) -> bool:
    argv = list(argv) if isinstance(argv, (list, tuple)) else [argv]
    head = Path(str(argv[0])).name
    return head in ("pio", "platformio") or argv[1:3] == ["-m", "platformio"]


def install(mocker) -> FakePio:
    """Replace subprocess.Popen as deploykit.toolchain.pio sees it; return the fake to script."""
    fake = FakePio()
    mocker.patch("deploykit.toolchain.pio.subprocess.Popen", side_effect=fake)
    return fake


def hide_platformio_module(mocker) -> None:
    """Make `import platformio` look impossible to deploykit.toolchain.pio.find_pio, nothing else."""
    import importlib.util

    real = importlib.util.find_spec
    mocker.patch("deploykit.toolchain.pio.importlib.util.find_spec",
                 side_effect=lambda name, *a: None if name == "platformio" else real(name, *a))
