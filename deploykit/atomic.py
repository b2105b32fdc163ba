"""Write files and directories so that a reader never sees them half-written."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import tempfile
from pathlib import Path

from deploykit.errors import BadInput


def lstat_or_none(path: Path) -> os.stat_result | None:
    """os.lstat (links not followed), None when nothing is there; a name the file system
    refuses (too long, a loop) is bad input in one line, not an OSError traceback."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise BadInput(f"output {_short(path)} has a name too long for the file system (names of at most "
                           f"255 bytes on most systems); choose a shorter path with -o") from exc
        raise BadInput(f"cannot use output {_short(path)}: {exc.strerror}; choose another with -o") from exc


def _short(path) -> str:
    """A path fit for one line: very long ones keep their start and end."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]} ({len(text)} characters)"


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` (and parents) or raise BadInput naming it."""
    path = Path(path)
    if os.path.islink(path) and not os.path.exists(path):
        raise BadInput(f"output directory {path} is a dangling symbolic link (to {os.readlink(path)}); "
                       f"remove the link or choose another with -o")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create output directory {path}: {exc.strerror}; choose another with -o") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadInput(f"output directory {path} is not writable; choose another with -o")
    return path


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it into place."""
    path = Path(path)
    # a short prefix: a name near the file system's limit must not make the temp name too long
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def make_temp_dir(parent: Path, prefix: str = ".deploykit-tmp-", target: Path | None = None) -> Path:
    """A new, empty directory in `parent` with a short random name, made with the user's umask.

    The name does not grow with the target's (a target name near the file system's limit
    must not make its temp dir's name too long), and unlike tempfile.mkdtemp's 0700 the
    mode is the one a plain mkdir gives, since the directory may be renamed into place.
    `target` (what the directory is for) is named in the error.
    """
    what = f"output {target}" if target is not None else f"in {parent}"
    for _ in range(100):
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:  # e.g. a directory root may pass access() but refuse new entries
            raise BadInput(f"cannot write {what}: {exc.strerror}; choose another directory with -o") from exc
    raise BadInput(f"cannot write {what}: no free temporary name in {parent}; choose another directory with -o")
