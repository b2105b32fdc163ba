"""boards/*.toml: every shipped board validates; broken files fail naming file and key."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from deploykit.errors import BadInput
from deploykit.firmware import boards as boards_mod
from deploykit.firmware.boards import all_boards, load_board, parse_board
from deploykit.firmware.resources import data_dir

REQUIRED_IDS = {"nano33ble_sense", "nano33ble_sense_rev2", "portenta_h7_m7", "nano_rp2040_connect",
                "esp32dev", "esp32s3_devkitc", "teensy41", "virtual",
                "nucleo_l4r5zi", "nucleo_f767zi", "pico", "esp32c3_devkitm"}


def test_shipped_boards_cover_the_issue():
    found = all_boards()
    ids = {b.id for b in found}
    assert ids >= REQUIRED_IDS
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
    (lambda t: re.sub(r"(?m)^platform_spec = .*$", "", t), "platform_spec"),
    (lambda t: re.sub(r"(?m)^platform_spec = .*$", 'platform_spec = "platformio/nordicnrf52"', t), "platform_spec"),
    (lambda t: re.sub(r"(?m)^platform_spec = .*$", 'platform_spec = "nordicnrf52@^10.0.0"', t), "platform_spec"),
    (lambda t: re.sub(r"(?m)^board = .*$", lambda m: 'board = "nano33ble\\nextra_scripts = pre:evil.py"', t), "board"),
], ids=["unknown", "missing", "type", "choice", "usb", "unpinned", "ssh-unpinned", "caret-range", "id-vs-file",
        "platform-missing", "platform-unpinned", "platform-range", "ini-newline"])
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
    code, out, _ = run_cli(["boards"], capsys)
    assert code == 0
    for known in REQUIRED_IDS:
        assert known in out
    code, out, _ = run_cli(["boards", "--json"], capsys)
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


# ----------------------------------------------------------------- pinned platforms, new boards


@pytest.mark.parametrize("board", all_boards(), ids=lambda b: b.id)
def test_every_board_file_pins_its_platform(board):
    """platformio.ini gets `platform = <platform_spec>`: one exact release of that platform."""
    assert boards_mod._pinned(board.platform_spec)
    assert re.fullmatch(rf"platformio/{board.platform}@\d+\.\d+\.\d+", board.platform_spec) or \
        (f"platform-{board.platform}" in board.platform_spec and "#" in board.platform_spec), board.platform_spec
    text = board.path.read_text(encoding="utf-8")
    assert re.search(r"#.*tag v\d+\.\d+\.\d+ \(commit [0-9a-f]{7}", text), "say where the pin was read"


def test_every_timer_template_reports_its_wire_kind():
    """A board's timer names a template; the template's DK_TIMER_KIND is the wire kind the
    virtual board announces for that board (esp_cpu reads a vendor CSR, reports a RISC-V counter)."""
    from deploykit.protocol import TimerKind
    for timer, kind in boards_mod.TIMER_KINDS.items():
        text = (data_dir("firmware_templates") / "timers" / f"{timer}.h.j2").read_text(encoding="utf-8")
        declared = re.search(r"#define DK_TIMER_KIND dk::TimerKind::k(\w+)", text).group(1)
        assert declared.lower() == kind and TimerKind[kind].name == kind
    c3 = load_board("esp32c3_devkitm")
    assert (c3.timer, c3.timer_kind) == ("esp_cpu", "mcycle")
    c3_timer = (data_dir("firmware_templates") / "timers" / "esp_cpu.h.j2").read_text(encoding="utf-8")
    assert "esp_cpu_get_cycle_count()" in c3_timer and "csrr" not in c3_timer


def test_new_boards_carry_their_platformio_ids():
    expected = {"nucleo_l4r5zi": ("ststm32", "nucleo_l4r5zi", "cortex-m4f", 120, "dwt"),
                "nucleo_f767zi": ("ststm32", "nucleo_f767zi", "cortex-m7", 216, "dwt"),
                "pico": ("raspberrypi", "pico", "cortex-m0plus", 133, "micros"),
                "esp32c3_devkitm": ("espressif32", "esp32-c3-devkitm-1", "riscv-rv32imc", 160, "esp_cpu")}
    for board_id, (platform, pio_board, core, mhz, timer) in expected.items():
        b = load_board(board_id)
        assert (b.platform, b.board, b.framework, b.core, b.clock_mhz, b.timer) == \
            (platform, pio_board, "arduino", core, mhz, timer)
        assert b.lib_deps and b.tflm_header


def test_boards_do_not_import_the_model_stage():
    """firmware/boards.py validates arena classes from the neutral list, not model/arena.py."""
    code = ("import sys, deploykit.firmware.boards as b; b.all_boards(); "
            "print(sorted(m for m in sys.modules if m.startswith('deploykit.model')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(boards_mod.__file__).parents[2]))).stdout
    assert out.strip() == "[]"
    from deploykit.model import arena
    assert tuple(arena.TARGETS) == boards_mod.ARENA_CLASSES == arena.TARGET_CLASSES


# ----------------------------------------------------------------- user boards


def _user_board(folder: Path, board_id: str = "my_board", clock_mhz: int = 99) -> Path:
    """A valid board file (the Nano 33 BLE's, renamed and re-clocked) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (data_dir("boards") / "nano33ble_sense.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^id = .*$', f'id = "{board_id}"', text)
    text = re.sub(r"(?m)^clock_mhz = .*$", f"clock_mhz = {clock_mhz}   # made up for the test", text)
    path = folder / f"{board_id}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def user_env(tmp_path, monkeypatch):
    """A working folder of its own and no DEPLOYKIT_BOARDS_PATH from the caller."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(boards_mod.PATH_VARIABLE, raising=False)
    return work


def test_boards_folder_of_the_current_folder_is_read(user_env):
    path = _user_board(user_env / "boards")
    board = load_board("my_board")
    assert board.clock_mhz == 99 and board.source == f"./boards: {path}" and not board.overrides
    assert load_board("teensy41").source == boards_mod.BUILT_IN


def test_user_board_overrides_a_built_in_one_and_says_so(user_env, capsys):
    path = _user_board(user_env / "boards", "nano33ble_sense", clock_mhz=77)
    board = load_board("nano33ble_sense")
    assert board.clock_mhz == 77 and board.path == path
    assert board.overrides == str(data_dir("boards") / "nano33ble_sense.toml")
    code, out, _ = run_cli(["boards"], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("nano33ble_sense "))
    assert "77 MHz" in row and row.endswith(f"./boards: {path} (overrides built-in)")
    assert "SOURCE" in out.splitlines()[0]
    code, out, _ = run_cli(["boards", "--json"], capsys)
    data = {b["id"]: b for b in json.loads(out)}
    assert data["nano33ble_sense"]["source"] == f"./boards: {path}" and data["nano33ble_sense"]["overrides"]
    assert data["teensy41"]["source"] == "built-in" and data["teensy41"]["overrides"] == ""


def test_boards_path_variable_later_folder_wins(user_env, tmp_path, monkeypatch):
    _user_board(user_env / "boards", clock_mhz=11)
    first, second = tmp_path / "first", tmp_path / "second"
    _user_board(first, clock_mhz=22)
    later = _user_board(second, clock_mhz=33)
    monkeypatch.setenv(boards_mod.PATH_VARIABLE, os.pathsep.join([str(first), str(second)]))
    board = load_board("my_board")
    assert board.clock_mhz == 33 and board.path == later and board.overrides == str(first / "my_board.toml")
    assert board.source == f"{boards_mod.PATH_VARIABLE}: {later}"


def test_boards_path_variable_naming_no_folder_is_one_line(user_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(boards_mod.PATH_VARIABLE, str(tmp_path / "nowhere"))
    code, _, err = run_cli(["boards"], capsys)
    assert code == 2 and boards_mod.PATH_VARIABLE in err and "nowhere" in err and len(err.splitlines()) == 1


def test_the_packages_own_folder_is_not_read_twice(monkeypatch):
    monkeypatch.chdir(data_dir("boards").parent)     # a checkout: ./boards is the package's data
    monkeypatch.delenv(boards_mod.PATH_VARIABLE, raising=False)
    assert [label for label, _ in boards_mod.search_path()] == [boards_mod.BUILT_IN]
    assert {b.source for b in all_boards()} == {boards_mod.BUILT_IN}


def test_bad_user_board_gets_the_same_validation(user_env, tmp_path, capsys):
    folder = tmp_path / "mine"
    path = _user_board(folder)
    path.write_text(path.read_text(encoding="utf-8").replace('timer = "dwt"', 'timer = "systick"'), encoding="utf-8")
    code, out, err = run_cli(["boards", "--boards-dir", str(folder)], capsys)
    assert code == 2 and out == ""
    assert str(path) in err and "'timer'" in err and len(err.splitlines()) == 1


def test_boards_dir_option_reaches_render_and_ends_with_the_command(user_env, tmp_path, capsys, converted_examples):
    """render (like every command taking --board) sees --boards-dir; the next command does not."""
    folder = tmp_path / "mine"
    _user_board(folder, "lab_board", clock_mhz=48)
    out_dir = tmp_path / "fw"
    code, _, err = run_cli(["render", str(converted_examples["sine"].path), "--board", "lab_board",
                           "--boards-dir", str(folder), "-o", str(out_dir)], capsys)
    assert code == 0, err
    ini = (out_dir / "platformio.ini").read_text(encoding="utf-8")
    assert "[env:lab_board]" in ini
    assert "#define DK_CPU_HZ 48000000UL" in (out_dir / "src" / "dk_config.h").read_text(encoding="utf-8")
    with pytest.raises(BadInput, match="lab_board"):
        load_board("lab_board")


def test_boards_dir_must_be_a_folder(user_env, tmp_path, capsys):
    code, _, err = run_cli(["boards", "--boards-dir", str(tmp_path / "missing")], capsys)
    assert code == 2 and "missing" in err and len(err.splitlines()) == 1


def test_every_board_command_takes_boards_dir():
    """Each command with --board reads board files, so each takes --boards-dir."""
    import click

    from deploykit.cli import cli
    ctx = click.Context(cli)
    missing = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        subcommands = command.commands.values() if isinstance(command, click.Group) else [command]
        for sub in subcommands:
            flags = {opt for p in sub.params for opt in p.opts}
            if "--board" in flags and "--boards-dir" not in flags:
                missing.append(sub.name)
    assert not missing


def test_virtual_board_standing_in_for_the_c3_announces_a_risc_v_cycle_counter(converted_examples):
    """The board's timer is a template name (esp_cpu); HELLO carries its wire kind (mcycle)."""
    from deploykit.protocol import TimerKind
    from deploykit.virtual_board.firmware import make_hello
    hello = make_hello(converted_examples["sine"], load_board("esp32c3_devkitm"), 2048, 1024)
    assert hello.timer == TimerKind.mcycle and hello.cpu_hz == 160_000_000
