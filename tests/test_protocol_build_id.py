"""HELLO's firmware id: render stamps a build id into the firmware; the virtual board has one too.

The id tells two builds of one model apart (another board, arena, TFLM port, template),
which the model hash cannot; resume and the mid-run reboot check rely on it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

from deploykit import __version__
from deploykit.firmware import build_id
from deploykit.firmware.boards import load_board
from deploykit.firmware.render import plan, render_files
from deploykit.protocol.spec import FIRMWARE_ID_BYTES
from deploykit.virtual_board import build_firmware


def _stamped(files: dict[str, bytes]) -> bytes:
    text = files[build_id.ID_FILE].decode()
    body = text[text.index("{") + 1:text.index("}")]
    return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body))


def test_render_stamps_a_hash_of_the_other_files_and_the_tflm_ref(sine_manifest):
    p = plan(sine_manifest.path, "nano33ble_sense")
    files = render_files(p)
    stamped = _stamped(files)
    others = {k: v for k, v in files.items() if k != build_id.ID_FILE}
    assert len(stamped) == FIRMWARE_ID_BYTES and any(stamped)
    assert stamped == build_id.rendered_id(others, p.board.lib_deps)
    assert "kDkFirmwareId" in files["src/main.cpp"].decode()  # HELLO sends it
    assert render_files(p) == files  # reproducible: same inputs, same id


def test_the_id_changes_with_any_source_the_arena_or_the_tflm_port(sine_manifest):
    p = plan(sine_manifest.path, "nano33ble_sense")
    files = render_files(p)
    base = _stamped(files)
    other_port = replace(p, board=replace(p.board, lib_deps=("https://example.invalid/tflm.git#0123abc",)))
    assert _stamped(render_files(other_port)) != base
    assert _stamped(render_files(plan(sine_manifest.path, "nano33ble_sense", arena_bytes=64000))) != base
    edited = dict(files, **{"src/dk_runner.cpp": files["src/dk_runner.cpp"] + b"\n"})
    assert build_id.rendered_id(edited, p.board.lib_deps) != base


def test_the_arduino_sketch_carries_the_same_id(sine_manifest):
    files = render_files(plan(sine_manifest.path, "nano33ble_sense"), arduino_sketch=True)
    sketch_ids = [v for k, v in files.items() if k.endswith("/dk_firmware_id.h") and not k.startswith("src/")]
    assert sketch_ids == [files[build_id.ID_FILE]]


def test_the_virtual_boards_id_hashes_manifest_board_file_and_version(sine_manifest, tmp_path):
    virtual = load_board("virtual")
    hello = build_firmware(sine_manifest, virtual).hello
    assert hello.firmware_id == build_id.virtual_id(sine_manifest.path.read_bytes(), virtual.path.read_bytes(),
                                                    __version__)
    assert len(hello.firmware_id) == FIRMWARE_ID_BYTES
    assert build_firmware(sine_manifest, load_board("esp32dev")).hello.firmware_id != hello.firmware_id
    # the same model under an edited manifest (here: a new name) is another build
    from deploykit.model.manifest import load
    shutil.copy(sine_manifest.model_path, tmp_path / sine_manifest["model_file"])
    (tmp_path / "manifest.json").write_text(json.dumps(dict(sine_manifest.data, name="sine2")))
    edited = load(tmp_path / "manifest.json")
    assert build_firmware(edited, virtual).hello.firmware_id != hello.firmware_id
    assert build_id.virtual_id(b"m", b"b", "0.1.0") != build_id.virtual_id(b"m", b"b", "0.1.1")
