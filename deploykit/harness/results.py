"""results.jsonl: one JSON line per sample, appended and flushed as results arrive.

The first line is a header naming the run: the model (sha256), the data (sha256 of all
its quantized samples, whatever --limit takes of them) and the device (board id, arena
configured and firmware id from its HELLO), plus when the file was started. A run resumes
a file only when all of these match (`IDENTITY`): samples already there are not sent
again, and a torn last line (a run killed mid-write) is cut off. A file of another run is
refused, naming what differs, unless resume=False starts it afresh; a file that is not a
deploykit results file, or a symbolic link, is never written.

Nothing is kept in memory but one flag per sample (done or not): each kept row is handed
once to `on_row` (the report's aggregator) as it is read on resume or appended, and the
report reads the rows back from the file (`rows()`) for figures that need every value.

Row: {"index", "outputs": [[ints or floats per output tensor]], "cycles", "us",
"round_trip_us"} or {"index", "error": text} for a sample the device could not run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from deploykit.errors import BadInput, DiskError

SCHEMA = "deploykit.hil-results/2"
_DECODE = json.JSONDecoder().raw_decode
SCHEMA_PREFIX = "deploykit.hil-results/"
# header key -> how a message names it; a file resumes only when all of them match
IDENTITY = {"model_sha256": "model", "data_sha256": "data", "board_id": "board",
            "arena_configured": "arena configured", "firmware_id": "firmware id"}


class RunHeader(TypedDict):
    """The first line of results.jsonl: what a run is (the IDENTITY keys) and when it began.

    A farm's header names the board kind as board_id and leaves the per-place arena and
    firmware id out (None).
    """

    schema: str
    model_sha256: str
    data_sha256: str
    board_id: str
    arena_configured: int | None
    firmware_id: str | None
    started_at: str


class _RowIndex(TypedDict):
    index: int


class Row(_RowIndex, total=False):
    """One sample's line: measured (outputs, cycles, us, round_trip_us) or failed (error)."""

    outputs: list[list[Any]]   # ints or floats, per output tensor
    cycles: int
    us: int
    round_trip_us: float
    error: str
    place: str                 # farm runs: the place and the board that measured it
    board: str


def run_header(model_sha256: str, data_sha256: str, hello) -> RunHeader:
    """The header of a run of this model and data on the device that sent `hello`."""
    return {"schema": SCHEMA, "model_sha256": model_sha256, "data_sha256": data_sha256,
            "board_id": hello.board_id, "arena_configured": int(hello.arena_configured),
            "firmware_id": bytes(getattr(hello, "firmware_id", b"") or b"").hex(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class ResumeMismatch(BadInput):
    """results.jsonl in the output folder belongs to another run."""


class ResultsFile:
    """Append-only per-sample results of samples 0..size-1, with resume."""

    def __init__(self, path: Path, header: RunHeader, size: int, resume: bool = True, on_row=None):
        self.path = Path(path)
        self.on_row = on_row or (lambda row: None)  # sees each kept row once: resumed, then new
        self.header: dict[str, Any] = dict(header)
        self.size = int(size)
        self.resume = resume
        self.done = np.zeros(self.size, dtype=bool)  # a row for this sample is in the file
        self.resumed = 0              # samples of 0..size-1 found in the file when it was opened
        self.earlier: dict | None = None  # the header of the file resumed, if one was
        self._fd: int | None = None
        self._pending: list[bytes] = []

    # --- opening -----------------------------------------------------------------------
    def check(self) -> dict | None:
        """Refuse now what open() would refuse (a link, a foreign file, another run's file);
        return the header to resume, if any. Cheap: reads one line."""
        existing = self._existing_header()
        if existing is not None and self.resume:
            self._check_same_run(existing)
            return existing
        return None

    def open(self) -> ResultsFile:
        """Resume a file of this run, refuse one of another run, or start a new one."""
        existing = self.check()
        if existing is not None:
            self._resume(existing)
        else:
            self._start()
        return self

    def _existing_header(self) -> dict | None:
        """The header of the file there (None: no file, or an empty one); refuse what is not ours."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise BadInput(f"{self.path} is {kind}; deploykit writes results only into a file of its "
                           "own there: remove it or choose another -o")
        with self._open_read() as fh:
            first = fh.readline(1 << 16)
        if not first.strip():
            return None
        header = _json(first)
        if not (isinstance(header, dict) and str(header.get("schema", "")).startswith(SCHEMA_PREFIX)):
            raise BadInput(f"{self.path} is not a deploykit results file; deploykit will not overwrite "
                           "it: move it or choose another -o")
        return header

    def _check_same_run(self, existing: dict) -> None:
        """Refuse, naming what differs, unless the file was written by this very run."""
        if existing.get("schema") != SCHEMA:
            raise ResumeMismatch(f"{self.path} was written by another deploykit version "
                                 f"({existing.get('schema')}) and cannot be checked against this run; "
                                 "pass --no-resume to start afresh, or choose another -o")
        diffs = [f"{label} {_short(existing.get(key))} there, {_short(self.header.get(key))} now"
                 for key, label in IDENTITY.items() if existing.get(key) != self.header.get(key)]
        if diffs:
            raise ResumeMismatch(f"{self.path} holds another run's results ({'; '.join(diffs)}); "
                                 "pass --no-resume to start afresh, or choose another -o")

    def _resume(self, existing: dict) -> None:
        """Mark the samples already there, cut a torn last line, open for appending."""
        kept = self._scan()
        fd = self._open_fd(os.O_WRONLY)
        try:
            os.ftruncate(fd, kept)
            os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            os.close(fd)
            raise _write_error(self.path, exc) from exc
        self._fd = fd
        self.earlier = existing
        self.resumed = int(self.done.sum())

    def _scan(self) -> int:
        """Mark done every sample with a row; return the byte length of the whole lines."""
        good = 0
        with self._open_read() as fh:
            for n, line in enumerate(fh):
                obj = _json(line) if line.endswith(b"\n") else None
                if obj is None:
                    break
                index = obj.get("index") if n and isinstance(obj, dict) else None
                if _valid_index(index, self.size) and not self.done[index]:
                    self.done[index] = True
                    self.on_row(obj)
                good += len(line)
        return good

    def _start(self) -> None:
        """A new file holding only the header, put in place by rename (never through a link)."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise _write_error(self.path, exc) from exc
        try:
            _write_all(fd, _line(self.header), self.path)
            os.fsync(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            os.close(fd)
            _unlink(tmp)
            raise _write_error(self.path, exc) from exc
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        self._fd = fd
        self.done[:] = False

    def _open_read(self):
        return os.fdopen(self._open_fd(os.O_RDONLY), "rb")

    def _open_fd(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BadInput(f"{self.path} is a symbolic link; deploykit writes results only into a "
                               "file of its own there: remove it or choose another -o") from None
            raise _write_error(self.path, exc) from exc

    # --- writing -----------------------------------------------------------------------
    def append(self, row: dict, flush: bool = True) -> None:
        """Record one sample's row (first one wins); write it out unless told to wait."""
        index = row["index"]
        if self.done[index]:
            return
        self.done[index] = True
        self._pending.append(_line(row))
        self.on_row(row)
        if flush:
            self.flush()

    def flush(self) -> None:
        """Write the rows waiting, whole lines only as far as the disk lets."""
        if self._pending and self._fd is not None:
            data, self._pending = b"".join(self._pending), []
            _write_all(self._fd, data, self.path)

    def sync(self) -> None:
        if self._fd is not None:
            self.flush()
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise _write_error(self.path, exc) from exc

    def close(self) -> None:
        """Write the rows still waiting (an interrupted run keeps them), then close."""
        if self._fd is not None:
            try:
                self.flush()
            finally:
                fd, self._fd = self._fd, None
                os.close(fd)

    def rows(self) -> Rows:
        """The rows of samples 0..size-1 in the file, read back lazily (see Rows)."""
        return Rows(self.path, self.size)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


class Rows:
    """The first row of each sample 0..size-1 in a results file, streamed from disk.

    Iterable as often as needed (each pass reads the file again); holds one row at a time
    and one flag per sample, so a report over 10^6 samples costs megabytes, not gigabytes.
    Rows come in file order (the order they arrived in).
    """

    def __init__(self, path: Path, size: int):
        self.path, self.size = Path(path), int(size)

    def __iter__(self):
        seen = np.zeros(self.size, dtype=bool)
        with open(self.path, "rb") as fh:
            fh.readline()  # the header
            for line in fh:
                obj = _json(line) if line.endswith(b"\n") else None
                if obj is None:
                    return
                index = obj.get("index") if isinstance(obj, dict) else None
                if _valid_index(index, self.size) and not seen[index]:
                    seen[index] = True
                    yield obj


def _valid_index(index, size: int) -> bool:
    return isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size


def _json(line: bytes):
    """The JSON value of one line, or None (raw_decode: twice as fast as json.loads here)."""
    try:
        text = line.decode("utf-8").strip()
        obj, end = _DECODE(text)
    except ValueError:  # also UnicodeDecodeError
        return None
    return obj if end == len(text) else None


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")


def _short(value) -> str:
    """A header value as a message shows it: hashes cut to 12 hex digits."""
    if value is None or value == "":
        return "none"
    if isinstance(value, str) and len(value) > 16 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    return repr(value) if isinstance(value, str) else str(value)


def _write_all(fd: int, data: bytes, path: Path) -> None:
    """os.write until all of `data` is out; a full disk becomes DiskError."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        view = view[n:]


def _write_error(path: Path, exc: OSError) -> BadInput | DiskError:
    """One line for an OSError on results.jsonl: a full disk is the rig (exit 3)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BadInput(f"cannot write {path}: permission denied; choose another -o")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(f"no space left on the disk holding {path}; free some space and run "
                         "again (the results written so far are kept and the run resumes)")
    return DiskError(f"cannot write {path}: {exc.strerror or exc}; check the disk and run again")


def _unlink(path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
