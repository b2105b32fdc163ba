"""Write files and directories so that a reader never sees them half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from deploykit.errors import BadInput


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` (and parents) or raise BadInput naming it."""
    path = Path(path)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


@contextlib.contextmanager
def replace_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temp directory; on success swap it in place of `target`.

    On failure the temp directory is removed and `target` is left as it was.
    """
    target = Path(target)
    ensure_writable_dir(target.parent if target.parent != Path("") else Path("."))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:  # e.g. a directory root may pass access() but refuse new entries
        raise BadInput(f"cannot write output directory {target}: {exc.strerror}; choose another with -o") from exc
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
