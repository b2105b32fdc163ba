"""Run a function in a forked child so a crash in C++ (TFLM segfaults on a too-small
arena or a malformed model) cannot take the caller down.

The child's fd 1 and fd 2 go to a temp file (TFLM prints there, from C), its return
value comes back as JSON on a pipe.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import tempfile
from dataclasses import dataclass


@dataclass
class ChildResult:
    ok: bool
    value: object
    output: str
    status: str  # "exit 0", "exit 3", "signal SIGSEGV"


def run_forked(fn, *args) -> ChildResult:
    """Call fn(*args) in a child; return its JSON-able value, captured C output, status."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as out:
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            _child(fn, args, write_fd, out.fileno())
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return _result(status, payload, text)


def _child(fn, args, write_fd: int, out_fd: int) -> None:
    code = 0
    try:
        faulthandler.disable()  # an expected crash must not dump a traceback on the parent's stderr
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        value = fn(*args)
        os.write(write_fd, json.dumps(value).encode())
    except BaseException as exc:  # report, never return into the parent's code
        os.write(write_fd, json.dumps({"__error__": f"{type(exc).__name__}: {exc}"}).encode())
        code = 3
    finally:
        _flush_c_stdio()
        os._exit(code)


def _flush_c_stdio() -> None:
    """os._exit skips C stdio buffers; flush them so TFLM's printf output is kept."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


def _result(status: int, payload: bytes, text: str) -> ChildResult:
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return ChildResult(False, None, text, f"signal {sig}")
    code = os.WEXITSTATUS(status)
    value = json.loads(payload) if payload else None
    if isinstance(value, dict) and "__error__" in value:
        text = (text + "\n" + value["__error__"]).strip()
        value = None
    return ChildResult(code == 0, value, text, f"exit {code}")
