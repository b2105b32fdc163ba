"""`render -o DIR` never loses a file deploykit did not write.

Render records what it wrote (.deploykit-render.json) and replaces only its own unedited
files; a user's project, a user's edits, a symlinked or dangling -o and a name too long for
the file system are each one line and exit 2, with nothing changed and no temp folder left.
Every folder and decoy here lives under tmp_path.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from deploykit.errors import DeployKitError
from deploykit.firmware.project_dir import MARKER
from deploykit.firmware.render import render

BOARD = "nano33ble_sense"


def refused(capsys, manifest, out, *extra) -> str:
    """Render into `out` through the CLI; assert one line, exit 2; return the line."""
    code, _, err = run_cli(["render", str(manifest), "--board", BOARD, "-o", str(out), *extra], capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("deploykit: error: ") and "Traceback" not in err, err
    return lines[0]


def tree(root: Path) -> dict:
    """Every entry under `root` (links not followed): path -> bytes, link target or "dir"."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_bytes()
    return found


def users_project(root: Path) -> Path:
    """A hand-made PlatformIO project with history and notes: nothing in it is deploykit's."""
    files = {".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n", "notes.md": "my notes\n",
             "platformio.ini": "[env:mine]\nplatform = nordicnrf52\n", "src/main.cpp": "int main() {}\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def sine(converted_examples):
    return converted_examples["sine"].path


# ---- folders render did not write -------------------------------------------------------

def test_users_project_is_refused_and_untouched(sine, tmp_path, capsys):
    out = users_project(tmp_path / "proj")
    before, around = tree(out), sorted(os.listdir(tmp_path))
    line = refused(capsys, sine, out)
    assert "platformio.ini" in line and "src/main.cpp" in line and "notes.md" in line and "-o" in line
    assert tree(out) == before
    assert sorted(os.listdir(tmp_path)) == around


def test_deploy_refuses_a_users_project_as_its_firmware_folder(sine, tmp_path, mocker):
    """deploy renders into OUT/firmware through the same guard, and keeps OUT itself."""
    from deploykit.deploy import deploy
    from deploykit.errors import BadInput
    mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=[])
    out = tmp_path / "out"
    users_project(out / "firmware")
    before = tree(out)
    with pytest.raises(BadInput, match="src/main.cpp"):
        deploy(sine, out, board="virtual", profile=BOARD, limit=5)
    assert tree(out) == before


# ---- re-rendering a project render wrote -------------------------------------------------

def test_rerender_keeps_user_files_and_pio(sine, tmp_path):
    out = render(sine, BOARD, tmp_path / "fw", arduino_sketch=True)
    mine = {"notes.md": b"my notes\n", "lib/mine/mine.h": b"#pragma once\n", ".pio/build/x/firmware.o": b"\x7fELF",
            "build.log": b"pio run\n", "sine/README.txt": b"sketch notes\n"}
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    render(sine, BOARD, out, arena_size=8192)  # no sketch this time: sine/sine.ino is render's to remove
    assert all((out / rel).read_bytes() == data for rel, data in mine.items())
    assert not (out / "sine" / "sine.ino").exists() and not (out / "sine" / "dk_runner.cpp").exists()
    assert "-DDK_ARENA_BYTES=8192" in (out / "platformio.ini").read_text()


def test_edited_rendered_file_is_refused_naming_it(sine, tmp_path, capsys):
    out = render(sine, BOARD, tmp_path / "fw")
    (out / "src" / "main.cpp").write_text("// my fix\n" + (out / "src" / "main.cpp").read_text())
    before = tree(out)
    line = refused(capsys, sine, out, "--arena-size", "8192")
    assert "src/main.cpp (edited" in line and "dk_runner.cpp" not in line
    assert tree(out) == before


def test_rerender_of_unedited_project_updates_only_what_changed(sine, tmp_path):
    out = render(sine, BOARD, tmp_path / "fw", arena_size=4096)
    folder, kept = os.stat(out), os.stat(out / "src" / "dk_protocol.cpp")
    render(sine, BOARD, out, arena_size=8192)
    fresh = render(sine, BOARD, tmp_path / "fresh", arena_size=8192)
    assert tree(out) == tree(fresh)
    record = json.loads((out / MARKER).read_text())
    assert record["complete"] is True and "previous" not in record
    assert record["files"]["platformio.ini"] == __import__("hashlib").sha256(
        (out / "platformio.ini").read_bytes()).hexdigest()
    # the folder is updated in place (a shell or IDE in it keeps working) and an unchanged
    # source keeps its inode and mtime, so PlatformIO does not rebuild it
    now = os.stat(out / "src" / "dk_protocol.cpp")
    assert os.stat(out).st_ino == folder.st_ino
    assert (now.st_ino, now.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)


def test_symlinked_source_folder_is_refused_and_its_target_untouched(sine, tmp_path, capsys):
    out = render(sine, BOARD, tmp_path / "fw")
    elsewhere = tmp_path / "elsewhere"
    (out / "src").rename(elsewhere)
    (out / "src").symlink_to(elsewhere)
    before = tree(elsewhere)
    line = refused(capsys, sine, out, "--arena-size", "8192")
    assert "src is a symbolic link" in line
    assert tree(elsewhere) == before


def test_marker_naming_a_file_outside_is_refused(sine, tmp_path, capsys):
    """A tampered marker cannot make render remove a file outside the project."""
    out = render(sine, BOARD, tmp_path / "fw")
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("keep me")
    record = json.loads((out / MARKER).read_text())
    record["files"]["../decoy.txt"] = __import__("hashlib").sha256(b"keep me").hexdigest()
    (out / MARKER).write_text(json.dumps(record))
    line = refused(capsys, sine, out)
    assert "damaged" in line and MARKER in line
    assert decoy.read_text() == "keep me"


def test_failed_move_leaves_whole_files_and_the_next_render_finishes(sine, tmp_path, monkeypatch):
    """The disk fails in the middle of the update: every file is old or new, none half-written,
    the user's file stays, and running render again completes the project."""
    out = render(sine, BOARD, tmp_path / "fw", arena_size=4096)
    (out / "notes.md").write_text("mine")
    old = tree(out)
    new = tree(render(sine, BOARD, tmp_path / "fresh", arena_size=8192))
    real_replace, calls = os.replace, []

    def full_disk(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(DeployKitError, match="render again"):
        render(sine, BOARD, out, arena_size=8192)
    monkeypatch.setattr(os, "replace", real_replace)
    now = tree(out)
    assert any(now[rel] != old[rel] for rel in old if rel != MARKER)  # it did stop half-way
    assert all(now[rel] in (old.get(rel), new.get(rel)) for rel in now if rel != MARKER)
    render(sine, BOARD, out, arena_size=8192)
    assert tree(out) == {**new, "notes.md": b"mine"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_staging_leaves_the_old_project_intact(sine, tmp_path, monkeypatch):
    out = render(sine, BOARD, tmp_path / "fw", arena_size=4096)
    before, real_write, calls = tree(out), Path.write_bytes, []

    def full_disk(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(DeployKitError, match="left as it was"):
        render(sine, BOARD, out, arena_size=8192)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]


# ---- what -o itself is -------------------------------------------------------------------

@pytest.mark.parametrize("contents", [{}, {"decoy.txt": b"keep me"}], ids=["empty", "decoy"])
def test_symlinked_output_is_refused_and_its_target_untouched(sine, tmp_path, capsys, contents):
    target = tmp_path / "target"
    target.mkdir()
    for rel, data in contents.items():
        (target / rel).write_bytes(data)
    link = tmp_path / "link"
    link.symlink_to(target)
    around = sorted(os.listdir(tmp_path))
    line = refused(capsys, sine, link)
    assert "symbolic link" in line and str(target) in line
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert tree(target) == contents
    assert sorted(os.listdir(tmp_path)) == around


def test_dangling_output_is_refused_and_leaves_nothing(sine, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing")
    around = sorted(os.listdir(tmp_path))
    line = refused(capsys, sine, link)
    assert "dangling symbolic link" in line
    assert sorted(os.listdir(tmp_path)) == around and not (tmp_path / "missing").exists()


def test_name_too_long_for_the_file_system_is_bad_input(sine, tmp_path, capsys):
    line = refused(capsys, sine, tmp_path / ("x" * 300))
    assert "too long" in line
    assert os.listdir(tmp_path) == []


def test_name_near_the_limit_renders(sine, tmp_path):
    """A 250-byte name is valid: the temp folder's name must not be derived from it."""
    out = render(sine, BOARD, tmp_path / ("p" * 250))
    assert (out / "platformio.ini").is_file() and (out / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_existing_empty_folder_is_rendered_in_place(sine, tmp_path):
    out = tmp_path / "fw"
    out.mkdir()
    inode = os.stat(out).st_ino
    render(sine, BOARD, out)
    assert os.stat(out).st_ino == inode and (out / "platformio.ini").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]


def test_deploy_output_name_too_long_is_bad_input(sine, tmp_path, mocker):
    from deploykit.deploy import deploy
    from deploykit.errors import BadInput
    mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=[])
    with pytest.raises(BadInput, match="too long"):
        deploy(sine, tmp_path / ("d" * 300), board="virtual", profile=BOARD, limit=5)
    assert os.listdir(tmp_path) == []
