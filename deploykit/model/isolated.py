"""Run a function in a child process so a crash in C++ (TFLM segfaults on a too-small
arena or a malformed model) cannot take the caller down.

Children come from a multiprocessing *forkserver*: a fresh interpreter that has imported
TFLM but never TensorFlow, so no child is forked from a process whose threads already run
(Python 3.12 warns that such a fork can deadlock, and TensorFlow starts threads on import).
The child's fd 1 and fd 2 go to a temp file (TFLM prints there, from C); its return value
comes back over a pipe.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import tempfile
from dataclasses import dataclass

# Imported once in the server, so each probe starts with TFLM loaded (a missing module is
# skipped by multiprocessing: the light install has no tflite-micro).
_PRELOAD = ["deploykit.model.tflm_host", "tflite_micro.python.tflite_micro.runtime"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(_PRELOAD)


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
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(prefix="deploykit-child-") as out:
        child = _CONTEXT.Process(target=_child, args=(fn, args, sender, out.name), daemon=True)
        child.start()
        sender.close()
        message = _receive(receiver)
        child.join()
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return _result(child.exitcode, message, text)


def _receive(receiver):
    """The child's one message, or None when it died before sending (EOF on the pipe)."""
    try:
        return receiver.recv()
    except EOFError:
        return None
    finally:
        receiver.close()


def _child(fn, args, sender, out_path: str) -> None:
    code = 0
    try:
        faulthandler.disable()  # an expected crash must not dump a traceback on the parent's stderr
        fd = os.open(out_path, os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sender.send(("value", fn(*args)))
    except BaseException as exc:  # report, never return into multiprocessing's own handling
        code = 3
        try:
            sender.send(("raised", exc))
        except Exception:  # not picklable: its text is enough
            sender.send(("error", f"{type(exc).__name__}: {exc}"))
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


def _result(exitcode: int | None, message, text: str) -> ChildResult:
    if exitcode is not None and exitcode < 0:
        return ChildResult(False, None, text, f"signal {signal.Signals(-exitcode).name}")
    value, raised = None, None
    if message and message[0] == "raised":
        raised = message[1]
        text = (text + "\n" + f"{type(raised).__name__}: {raised}").strip()
    elif message and message[0] == "error":
        text = (text + "\n" + message[1]).strip()
    elif message:
        value = message[1]
    return ChildResult(exitcode == 0, value, text, f"exit {exitcode}", raised)
