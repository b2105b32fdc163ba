"""Run a function in a child process so a crash in C++ (TFLM segfaults on a too-small
arena or a malformed model, TensorFlow's converter on some models) cannot take the caller down.

Children are forked by a probe server: a fresh interpreter (`python -m
deploykit.model.isolated`), started once per process, that has imported TFLM but never
TensorFlow and runs no threads. So no child is forked from a process whose threads already
run (Python 3.12 warns that such a fork can deadlock, and TensorFlow starts threads on
import), and, unlike multiprocessing's forkserver, nothing re-imports the caller's main
script: a user's script without an `if __name__ == "__main__":` guard stays safe.

Requests (a module-level function and its arguments) and answers go as length-prefixed
pickles over the server's stdin and stdout. A child's fd 1 and fd 2 go to a temp file (TFLM
prints there, from C); its return value, or what it raised, comes back through a pipe.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import importlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

from deploykit.errors import RigError

# Imported once in the server, so each probe starts with TFLM loaded (a missing module is
# skipped: the light install has no tflite-micro).
_PRELOAD = ("deploykit.model.tflm_host", "tflite_micro.python.tflite_micro.runtime")
_LENGTH = struct.Struct("<Q")
_server: subprocess.Popen | None = None
_lock = threading.Lock()


@dataclass
class ChildResult:
    ok: bool
    value: object
    output: str
    status: str  # "exit 0", "exit 3", "signal SIGSEGV"
    raised: BaseException | None = None  # what fn raised, when it could be sent back

    def reraise(self) -> None:
        """Raise again in the caller what fn raised in the child (a deploykit error keeps its type)."""
        if self.raised is not None:
            raise self.raised


def run_isolated(fn, *args) -> ChildResult:
    """Call fn(*args) (a module-level function) in a child; return its value, C output, status."""
    request = pickle.dumps((fn, args))
    with _lock:
        for attempt in (1, 2):
            server = _running_server()
            try:
                _send(server.stdin, request)
                status, payload, text = pickle.loads(_receive(server.stdout))
                break
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                _stop_server()
                if attempt == 2:
                    raise RigError(f"deploykit's probe process died ({exc}); run again, with --debug "
                                   "to see its output") from exc
    return _result(status, payload, text)


# ------------------------------------------------------------------------- the caller's side

def _running_server() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        path = os.pathsep.join(p or os.getcwd() for p in sys.path)  # the caller's modules, tests too
        _server = subprocess.Popen([sys.executable, "-m", "deploykit.model.isolated"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env={**os.environ, "PYTHONPATH": path})
    return _server


@atexit.register
def _stop_server() -> None:
    """Close the server's stdin (it exits at EOF) and reap it."""
    global _server
    server, _server = _server, None
    if server is None:
        return
    for stream in (server.stdin, server.stdout):
        if stream is not None:  # both are pipes (Popen with PIPE); None only to the type checker
            with contextlib.suppress(OSError):
                stream.close()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _send(stream, data: bytes) -> None:
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the probe process closed its output")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the probe process's answer was cut short")
    return data


def _result(status: int | None, payload: bytes, text: str) -> ChildResult:
    message = _unpickle(payload)
    if status is not None and os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return ChildResult(False, None, text, f"signal {sig}")
    code = os.WEXITSTATUS(status) if status is not None else 3
    value, raised = None, None
    if message and message[0] == "raised":
        raised = message[1]
        text = (text + "\n" + f"{type(raised).__name__}: {raised}").strip()
    elif message and message[0] == "error":
        text = (text + "\n" + message[1]).strip()
    elif message:
        value = message[1]
    return ChildResult(code == 0, value, text, f"exit {code}", raised)


def _unpickle(payload: bytes):
    try:
        return pickle.loads(payload) if payload else None
    except Exception as exc:  # what the child sent cannot be rebuilt here: say so
        return ("error", f"the child's answer could not be read ({type(exc).__name__}: {exc})")


# ------------------------------------------------------------------------- the server's side

def _serve() -> None:
    """Answer requests from stdin until it closes; each one runs in a forked child."""
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return
        _send(answers, pickle.dumps(_answer(request)))


def _answer(request: bytes) -> tuple:
    try:
        fn, args = pickle.loads(request)
    except Exception as exc:  # e.g. fn's module cannot be imported here
        return None, pickle.dumps(("error", f"{type(exc).__name__}: {exc}")), ""
    return _fork_one(fn, args)


def _fork_one(fn, args) -> tuple:
    """(wait status, pickled message, captured output) of fn(*args) run in a forked child."""
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
    return status, payload, text


def _child(fn, args, write_fd: int, out_fd: int) -> None:
    """In the forked child: run fn, send what came of it, and always end with os._exit."""
    code = 3
    try:
        faulthandler.disable()  # an expected crash must not dump a traceback
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        try:
            message, code = ("value", fn(*args)), 0
        except BaseException as exc:  # report, never return into the server's loop
            message = ("raised", exc)
        try:
            data = pickle.dumps(message)
        except Exception:  # not picklable: its text is enough
            data = pickle.dumps(("error", f"{type(message[1]).__name__}: {message[1]}"))
        _write_all(write_fd, data)
    finally:
        _flush_c_stdio()
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _flush_c_stdio() -> None:
    """os._exit skips C stdio buffers; flush them so TFLM's printf output is kept."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


if __name__ == "__main__":
    _serve()
