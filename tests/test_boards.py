"""boards/*.toml: every shipped board validates; broken files fail naming file and key."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from deploykit.errors import BadInput
from deploykit.firmware import boards as boards_mod
from deploykit.firmware.boards import all_boards, load_board, parse_board
from deploykit.firmware.resources import data_dir

REQUIRED_IDS = {"nano33ble_sense", "nano33ble_sense_rev2", "portenta_h7_m7", "nano_rp2040_connect",
                "esp32dev", "esp32s3_devkitc", "teensy41", "virtual"}


def run_cli(capsys, *args):
    from deploykit.cli import main
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_shipped_boards_cover_the_issue():
    found = all_boards()
    ids = {b.id for b in found}
    assert REQUIRED_IDS <= ids
    assert len(found) >= 7
    assert len({b.platform for b in found}) >= 4


@pytest.mark.parametrize("board", all_boards(), ids=lambda b: b.id)
def test_board_fields_are_sane(board):
    assert board.path.stem == board.id
    assert board.timer in boards_mod.TIMERS and board.arena_class in boards_mod.ARENA_CLASSES
    assert all(boards_mod._pinned(dep) for dep in board.lib_deps), "TFLM dependency must be pinned"
    assert len(board.tflm_library_note) > 80, "record why this TFLM port"
    assert board.runtime_flash_bytes < board.flash_bytes and board.runtime_ram_bytes < board.ram_bytes
    if board.adapter == "arduino":
        assert board.usb_ids and board.board and board.framework == "arduino"


@pytest.mark.parametrize("board", all_boards(), ids=lambda b: b.id)
def test_every_figure_cites_its_source(board):
    """Hardware figures carry a comment on their line or the comment block just above."""
    lines = board.path.read_text(encoding="utf-8").splitlines()
    for key in ("clock_mhz", "ram_bytes", "flash_bytes", "rx_buffer_bytes", "cycles_per_mac"):
        idx = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
        context = lines[idx] + "".join(lines[max(0, idx - 3):idx])
        assert "#" in context, f"{board.path.name}: {key} has no source comment"


def test_load_board_unknown_lists_known_ids():
    with pytest.raises(BadInput) as exc:
        load_board("arduino_uno")
    message = str(exc.value)
    assert "arduino_uno" in message and "\n" not in message
    for known in REQUIRED_IDS:
        assert known in message


def _copy_board(tmp_path: Path, edit) -> Path:
    src = data_dir("boards") / "nano33ble_sense.toml"
    text = edit(src.read_text(encoding="utf-8"))
    target = tmp_path / "nano33ble_sense.toml"
    target.write_text(text, encoding="utf-8")
    return target


@pytest.mark.parametrize("edit, key", [
    (lambda t: t + '\nflash_kb = 1024\n', "flash_kb"),
    (lambda t: re.sub(r"(?m)^baud = .*$", "", t), "baud"),
    (lambda t: re.sub(r"(?m)^clock_mhz = .*$", 'clock_mhz = "fast"', t), "clock_mhz"),
    (lambda t: re.sub(r"(?m)^timer = .*$", 'timer = "systick"', t), "timer"),
    (lambda t: re.sub(r"(?m)^usb_ids = .*$", 'usb_ids = ["2341-805A"]', t), "usb_ids"),
    (lambda t: re.sub(r"#46da2f9\w+", "", t), "lib_deps"),
    (lambda t: re.sub(r'(?m)^lib_deps = .*$', 'lib_deps = ["git@github.com:a/tflm.git"]', t), "lib_deps"),
    (lambda t: re.sub(r'(?m)^lib_deps = .*$', 'lib_deps = ["owner/tflm@^1.2.0"]', t), "lib_deps"),
    (lambda t: re.sub(r'(?m)^id = .*$', 'id = "other"', t), "id"),
], ids=["unknown", "missing", "type", "choice", "usb", "unpinned", "ssh-unpinned", "caret-range", "id-vs-file"])
def test_bad_board_file_names_file_and_key(tmp_path, edit, key):
    path = _copy_board(tmp_path, edit)
    with pytest.raises(BadInput) as exc:
        parse_board(path)
    message = str(exc.value)
    assert str(path) in message and repr(key) in message and "\n" not in message


def test_bad_board_file_in_directory_fails_table(tmp_path):
    _copy_board(tmp_path, lambda t: t + "\nbogus = 1\n")
    with pytest.raises(BadInput, match="bogus"):
        all_boards(tmp_path)


def test_cli_boards_table_and_json(capsys):
    code, out, _ = run_cli(capsys, "boards")
    assert code == 0
    for known in REQUIRED_IDS:
        assert known in out
    code, out, _ = run_cli(capsys, "boards", "--json")
    assert code == 0
    data = json.loads(out)
    assert {b["id"] for b in data} >= REQUIRED_IDS
    nano = next(b for b in data if b["id"] == "nano33ble_sense")
    assert nano["usb_ids"] == ["2341:005A", "2341:805A"] and nano["clock_mhz"] == 64


def test_no_code_branches_on_board_names():
    """Boards are data: no board id appears as a literal in the code or templates that read them."""
    ids = {b.id for b in all_boards()} - {"virtual"}
    root = Path(boards_mod.__file__).parents[1]
    sources = [root / "firmware" / "boards.py", root / "firmware" / "render.py", root / "firmware" / "cfilters.py",
               root / "commands" / "boards.py", root / "commands" / "render.py"]
    sources += [p for p in data_dir("firmware_templates").rglob("*") if p.is_file() and p.suffix != ".json"]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for board_id in ids:
            assert f'"{board_id}"' not in text and f"'{board_id}'" not in text, (path, board_id)


def test_board_dir_copy_loads_from_explicit_directory(tmp_path):
    for p in data_dir("boards").glob("*.toml"):
        shutil.copy(p, tmp_path / p.name)
    assert {b.id for b in all_boards(tmp_path)} == {b.id for b in all_boards()}
