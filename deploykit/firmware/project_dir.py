"""Write a rendered project into its folder without ever losing a file deploykit did not write.

Render records what it wrote in MARKER (`.deploykit-render.json`): each file's path and
sha256. A later render overwrites or removes only files listed there whose bytes are still
the recorded ones; everything else in the folder (the user's own files, PlatformIO's
`.pio/`, build logs) stays. A folder without the marker is written only when it is new or
empty, and `-o` must be a real directory, never a symbolic link. Anything else is refused
before a byte is written, naming the files that would be lost.

Writing: every file is first written into a temp folder beside the project. A new project
is then renamed into place whole. An existing one is updated file by file with renames;
first the marker is rewritten as a journal listing both the old and the new hashes, so a
crash in that short phase leaves every file whole (old or new), each still known as
render's own, and the next render finishes the job. Files whose bytes do not change are
not touched, so PlatformIO's incremental build keeps its work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploykit import __version__
from deploykit.atomic import ensure_writable_dir, lstat_or_none, make_temp_dir
from deploykit.errors import BadInput, DeployKitError

MARKER = ".deploykit-render.json"
MARKER_FORMAT = 1
SHOWN = 6           # names listed in one refusal line before "and N more"
TEMP_PREFIX = ".deploykit-render-"


@dataclass
class Recorded:
    """What the marker of an earlier render says it wrote: path -> the hashes that are render's."""

    hashes: dict[str, set[str]] = field(default_factory=dict)

    def owns(self, rel: str, digest: str) -> bool:
        return digest in self.hashes.get(rel, ())


@dataclass
class Update:
    """What writing `files` into an existing folder does: write, keep as is, remove."""

    write: list[str]
    unchanged: list[str]
    remove: list[str]
    current: dict[str, str]   # render's files now on disk -> their hash (the journal's "previous")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


# --------------------------------------------------------------------------- the folder as found

def check_output(outdir: Path) -> os.stat_result | None:
    """Refuse a symlinked, dangling or non-directory -o; return its lstat (None: absent)."""
    st = lstat_or_none(outdir)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(outdir)
        if os.path.exists(outdir):
            raise BadInput(f"output {outdir} is a symbolic link (to {target}); render writes only into a real "
                           f"directory: give -o the directory itself ({os.path.realpath(outdir)}) or a new path")
        raise BadInput(f"output {outdir} is a dangling symbolic link (to {target}); "
                       f"remove the link or give -o a new path")
    if not stat.S_ISDIR(st.st_mode):
        raise BadInput(f"output {outdir} is a file, not a directory; choose another with -o")
    return st


def read_marker(outdir: Path) -> Recorded | None:
    """The earlier render's record in `outdir`, None if there is none; BadInput if damaged."""
    path = outdir / MARKER
    st = lstat_or_none(path)
    if st is None:
        return None
    try:
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("it is not a regular file")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
            raise ValueError(f"format is not {MARKER_FORMAT}")
        recorded = Recorded()
        for key in ("files", "previous"):
            for rel, digest in (data.get(key) or {}).items():
                _check_rel(rel)
                if not (isinstance(digest, str) and len(digest) == 64):
                    raise ValueError(f"{rel!r} has no sha256")
                recorded.hashes.setdefault(rel, set()).add(digest)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{path} is damaged ({exc}), so render cannot tell its files from yours: move the "
                       f"files you want to keep out of {outdir} and delete it, or choose another -o") from exc
    return recorded


def _check_rel(rel) -> None:
    """A path the marker may name: relative, inside the folder, in plain form."""
    pure = PurePosixPath(rel) if isinstance(rel, str) else None
    if pure is None or pure.is_absolute() or not pure.parts or str(pure) != rel \
            or any(part in ("..", ".") for part in pure.parts) or "\\" in rel or rel == MARKER:
        raise ValueError(f"{rel!r} is not a path inside the project")


def _parent_problem(outdir: Path, rel: str) -> str | None:
    """Why `rel`'s folders inside `outdir` cannot take a file (a link or a file in the way)."""
    here = outdir
    for part in PurePosixPath(rel).parts[:-1]:
        here = here / part
        st = lstat_or_none(here)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            return f"{here.relative_to(outdir).as_posix()} is a symbolic link"
        if not stat.S_ISDIR(st.st_mode):
            return f"{here.relative_to(outdir).as_posix()} is a file"
    return None


def _on_disk(path: Path) -> str | None:
    """The sha256 of a regular file at `path`; None if absent; "" if something else is there
    (a folder, a link); "unreadable" if it cannot be read."""
    st = lstat_or_none(path)
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        return ""
    try:
        return sha256(path.read_bytes())
    except OSError:  # unreadable: it cannot be shown to be render's, so it is kept and named
        return "unreadable"


def plan_update(outdir: Path, files: dict[str, bytes], recorded: Recorded) -> Update:
    """Sort each path into write / unchanged / remove, or refuse naming every file at risk."""
    update, problems = Update([], [], [], {}), []
    for rel in sorted(set(files) | set(recorded.hashes)):
        in_the_way = _parent_problem(outdir, rel)
        if in_the_way:
            problems.append(f"{rel} ({in_the_way})")
            continue
        digest = _on_disk(outdir / rel)
        wanted = sha256(files[rel]) if rel in files else None
        if digest and recorded.owns(rel, digest):
            update.current[rel] = digest
        if digest is None:
            if wanted:
                update.write.append(rel)
        elif digest == wanted:
            update.unchanged.append(rel)
        elif rel in update.current:
            (update.write if wanted else update.remove).append(rel)
        elif digest in ("", "unreadable"):
            problems.append(f"{rel} ({'not a regular file' if digest == '' else 'unreadable'})")
        elif rel in recorded.hashes:
            problems.append(f"{rel} (edited since render wrote it)")
        else:
            problems.append(f"{rel} (not written by render)")
    if problems:
        raise BadInput(f"rendering into {outdir} would overwrite or remove {_names(problems)}; copy your changes "
                       f"elsewhere and move those files away (render then writes fresh ones), "
                       f"or choose another directory with -o")
    return update


def _refuse_foreign(outdir: Path, files: dict[str, bytes]) -> None:
    """A non-empty folder render did not write: say what is in it and what would be overwritten."""
    with os.scandir(outdir) as found:
        entries = sorted(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "") for entry in found)
    clash = [rel for rel in sorted(files) if os.path.lexists(outdir / rel)]
    risk = f"; rendering would overwrite {_names(clash)}" if clash else ""
    raise BadInput(f"output directory {outdir} holds files deploykit render did not write "
                   f"({_names(entries)}; no {MARKER}){risk}: choose an empty or new directory with -o, "
                   f"or move those files away")


# --------------------------------------------------------------------------- writing

def marker_bytes(files: dict[str, str], about: dict, previous: dict[str, str] | None = None) -> bytes:
    """The marker: which files render wrote (path -> sha256); `previous` only while updating."""
    data = {"format": MARKER_FORMAT, "written_by": f"deploykit {__version__} render", **about,
            "complete": previous is None, "files": dict(sorted(files.items()))}
    if previous is not None:
        data["previous"] = dict(sorted(previous.items()))
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _stage(tmp: Path, files: dict[str, bytes], names) -> None:
    for rel in names:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[rel])


def _disk_error(outdir: Path, exc: OSError, journal: bool) -> DeployKitError:
    after = (f"; every file is whole and {MARKER} knows them, so running render again finishes the job"
             if journal else "; the project was left as it was")
    return DeployKitError(f"writing the project into {outdir} failed: {exc.strerror or exc}{after}")


def write_project(outdir, files: dict[str, bytes], about: dict) -> Path:
    """Write `files` (relative path -> bytes) into `outdir`, keeping every file render did not write."""
    outdir = Path(outdir)
    st = check_output(outdir)
    update = None if st is None else plan_update(outdir, files, _recorded_or_refuse(outdir, files))
    hashes = {rel: sha256(data) for rel, data in files.items()}
    tmp = make_temp_dir(_temp_home(outdir, st), TEMP_PREFIX, target=outdir)
    try:
        if update is None:
            _write_new(outdir, tmp, files, hashes, about)
        else:
            _update(outdir, tmp, files, hashes, about, update)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return outdir


def _recorded_or_refuse(outdir: Path, files: dict[str, bytes]) -> Recorded:
    """The marker's record; an empty folder counts as an empty record; anything else is refused."""
    recorded = read_marker(outdir)
    if recorded is not None:
        return recorded
    try:
        with os.scandir(outdir) as entries:
            empty = not any(entries)
    except OSError as exc:
        raise BadInput(f"cannot read output directory {outdir}: {exc.strerror}; choose another with -o") from exc
    if not empty:
        _refuse_foreign(outdir, files)
    return Recorded()


def _temp_home(outdir: Path, st: os.stat_result | None) -> Path:
    """Where to stage: beside `outdir`; inside an existing one when beside is another file
    system (renames could not cross it) or not writable."""
    if st is None:
        return ensure_writable_dir(outdir.parent)
    parent = outdir.parent
    try:
        same = os.stat(parent).st_dev == st.st_dev and os.access(parent, os.W_OK | os.X_OK)
    except OSError:
        same = False
    return parent if same else outdir


def _write_new(outdir: Path, tmp: Path, files, hashes, about) -> None:
    """A new project: written whole in `tmp`, then renamed into place in one step."""
    try:
        _stage(tmp, files, sorted(files))
        (tmp / MARKER).write_bytes(marker_bytes(hashes, about))
    except OSError as exc:
        raise _disk_error(outdir, exc, journal=False) from exc
    try:
        os.rename(tmp, outdir)
    except OSError as exc:  # something made `outdir` while we rendered
        raise BadInput(f"output {outdir} appeared while rendering; run render again") from exc


def _update(outdir: Path, tmp: Path, files, hashes, about, update: Update) -> None:
    """An existing project: stage, journal, rename each changed file in, drop stale ones, record."""
    try:
        _stage(tmp, files, update.write)
    except OSError as exc:
        raise _disk_error(outdir, exc, journal=False) from exc
    try:
        _put_marker(outdir, tmp, marker_bytes(hashes, about, previous=update.current))
        for rel in update.write:
            (outdir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, outdir / rel)
        for rel in update.remove:
            (outdir / rel).unlink()
            _prune_empty(outdir, (outdir / rel).parent)
        _put_marker(outdir, tmp, marker_bytes(hashes, about))
    except OSError as exc:
        raise _disk_error(outdir, exc, journal=True) from exc


def _put_marker(outdir: Path, tmp: Path, data: bytes) -> None:
    """Replace the marker in one rename (written in `tmp`, which is on the same file system)."""
    (tmp / MARKER).write_bytes(data)
    os.replace(tmp / MARKER, outdir / MARKER)


def _prune_empty(outdir: Path, folder: Path) -> None:
    """Remove folders a removed file leaves empty (rmdir only: never a folder with anything in it)."""
    while folder != outdir and outdir in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
