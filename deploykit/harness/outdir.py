"""The output folder of a run, locked for as long as the run writes to it.

Two runs into one folder would interleave their rows and reports (two runs once wrote
62,970 duplicate rows). `locked_outdir` takes an exclusive flock on DIR/.deploykit.lock
before the device is opened and holds it until the reports are written; a second run
fails at once with one line (exit 2). The lock goes with the process, so a killed run
never leaves the folder locked. A folder the run created is removed again when the run
fails before writing anything into it (bad input must leave nothing behind).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from deploykit.atomic import ensure_writable_dir
from deploykit.errors import BadInput

LOCK_NAME = ".deploykit.lock"


class OutdirBusy(BadInput):
    """Another run holds the output folder."""


@contextlib.contextmanager
def locked_outdir(outdir: Path) -> Iterator[Path]:
    """Create `outdir` if needed, hold its lock for the `with` block, tidy up on failure."""
    outdir = Path(outdir)
    created = _missing(outdir)
    fd = _lock(outdir)
    try:
        yield outdir
    except BaseException:
        _remove_if_untouched(outdir, created, fd)
        raise
    os.close(fd)


def _lock(outdir: Path) -> int:
    """The fd of the folder's lock file, exclusively locked (retried if the file is replaced)."""
    for _ in range(5):
        ensure_writable_dir(outdir)
        path = outdir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder vanished in between (a failed run tidying up)
            continue
        except OSError as exc:
            raise BadInput(f"cannot lock output directory {outdir} ({path}: {exc.strerror}); "
                           "choose another with -o") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutdirBusy(f"output directory {outdir} is in use by another run{holder}; wait "
                                 "for it to finish or choose another -o") from None
            raise
        if _same_file(fd, path):
            _note_holder(fd)
            return fd
        os.close(fd)  # the lock file was removed or replaced while we locked it
    raise OutdirBusy(f"output directory {outdir} keeps changing under another run; choose another -o")


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _note_holder(fd: int) -> None:
    """Write our pid into the lock file, so the refusal can name the run."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (pid {pid})"
    return ""


def _missing(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_if_untouched(outdir: Path, created: list[Path], fd: int) -> None:
    """Undo the folders this run created, if nothing but the lock file went in."""
    try:
        if created and {p.name for p in outdir.iterdir()} <= {LOCK_NAME}:
            (outdir / LOCK_NAME).unlink(missing_ok=True)
            for path in created:
                path.rmdir()
    except OSError:
        pass
    finally:
        os.close(fd)
