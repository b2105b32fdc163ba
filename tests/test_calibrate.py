"""`deploykit calibrate`: a known cost file on the virtual board is recovered within 5 %.

The virtual board prices every operator of the micro-models with the cost file found on
the boards path (ID.cost.toml beside the board files); calibrate times them through the
wire protocol (OP_TIMING_REQ), fits and writes its own ID.cost.toml into another folder.
Every figure of the known file must come back within 5 %, on a cycle-counter board and on
a `micros` board (whose per-operator ticks are whole microseconds: quantisation noise).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import error_lines, run_cli

from deploykit.errors import BadInput
from deploykit.firmware import boards
from deploykit.harness.calibrate import features, fit
from deploykit.harness.calibrate_models import mac_model
from deploykit.model.tflite_model import parse
from deploykit.virtual_board import cost

# Made up, plausible, and unlike the built-in figures for the virtual board (reference
# kernels, 70 cycles per MAC, 1200 cycles per operator): a CMSIS-NN-like board.
KNOWN = {
    "op_overhead_cycles": 850.0,
    "per_output": {"integer": 11.0, "float": 7.0},
    "cycles_per_mac": {
        "int8": {"conv": 2.1, "conv_1x1": 1.7, "conv_few_channels": 5.3, "depthwise_3x3": 2.9,
                 "depthwise": 3.8, "fully_connected": 1.9},
        "float32": {"conv": 48.0, "conv_1x1": 44.0, "conv_few_channels": 52.0, "depthwise_3x3": 57.0,
                    "depthwise": 61.0, "fully_connected": 5.5},
    },
    "per_element": {
        "integer": {"requant": 9.0, "activation": 13.0, "softmax": 31.0, "pool": 2.5, "reduce": 7.0,
                    "copy": 0.4, "move": 3.2},
        "float": {"requant": 5.0, "activation": 55.0, "softmax": 110.0, "pool": 7.0, "reduce": 5.5,
                  "copy": 0.3, "move": 3.6},
    },
}


def _toml(figures: dict, board: str) -> str:
    lines = [f'board = "{board}"', f"op_overhead_cycles = {figures['op_overhead_cycles']}",
             "[per_output]"] + [f"{k} = {v}" for k, v in figures["per_output"].items()]
    for section in ("cycles_per_mac", "per_element"):
        for kind, table in figures[section].items():
            lines += [f"[{section}.{kind}]"] + [f"{k} = {v}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _flat(figures: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)):
            out[prefix + key] = float(value)
    return out


@pytest.fixture
def known_dir(tmp_path) -> Path:
    folder = tmp_path / "known"
    folder.mkdir()
    (folder / "virtual.cost.toml").write_text(_toml(KNOWN, "virtual"))
    return folder


@pytest.fixture(autouse=True)
def _no_extra_dirs():
    yield
    boards.set_boards_dirs(())


def test_the_virtual_board_prices_operators_with_the_cost_file(known_dir):
    boards.set_boards_dirs([known_dir])
    board = boards.load_board("virtual")
    assert board.cost_path == str(known_dir.resolve() / "virtual.cost.toml")
    conv = parse(mac_model("int8")).operators[2]   # a 3x3 conv, 8 input channels
    assert cost.shape_class(conv) == "conv"
    assert cost.op_cycles(conv, board) == round(850 + conv.macs * 2.1 + conv.out_elems * 11.0)
    boards.set_boards_dirs(())
    assert cost.op_cycles(conv, boards.load_board("virtual")) > 20 * cost.op_cycles(conv, board)  # the table's


@pytest.mark.parametrize("timer", ["dwt", "micros"])
def test_calibrate_recovers_every_figure_of_a_known_cost_file(known_dir, tmp_path, capsys, timer):
    if timer == "micros":  # a board timing with micros(): per-operator ticks are whole microseconds
        text = (Path(boards.data_dir("boards")) / "virtual.toml").read_text()
        (known_dir / "virtual.toml").write_text(text.replace('timer = "dwt"', 'timer = "micros"'))
    out = tmp_path / "fitted"
    code, stdout, err = run_cli(["calibrate", "--port", "virtual", "--board", "virtual", "--boards-dir", known_dir,
                                 "-o", out, "--runs", "2"], capsys)
    assert code == 0, err
    written = out / "virtual.cost.toml"
    assert f"wrote {written}" in stdout
    fitted = _flat(boards.parse_cost_file(written))
    known = _flat(KNOWN)
    assert set(known) <= set(fitted)
    for name, value in known.items():
        assert fitted[name] == pytest.approx(value, rel=0.05), name
    assert tomllib.loads(written.read_text())["board"] == "virtual"
    assert not list(out.glob(".*")), "no temp file left beside the cost file"


def test_the_fit_recovers_exact_costs_and_refuses_figures_it_cannot_separate():
    ops = parse(mac_model("float32")).operators
    board = boards.load_board("virtual")
    rows = [features(op) for op in ops]
    coef, misfit = fit(rows, [cost.op_cycles(op, board) for op in ops])
    assert coef["op_overhead_cycles"] == pytest.approx(board.op_overhead_cycles, rel=1e-3)
    assert coef["cycles_per_mac.float32.fully_connected"] == pytest.approx(6.0, rel=1e-3)
    assert misfit < 1e-3
    from deploykit.errors import DeviceError
    with pytest.raises(DeviceError, match="cannot tell"):
        fit([{"op_overhead_cycles": 1.0, "per_element.float.copy": 10.0}] * 3, [100.0] * 3)


def test_an_unknown_board_is_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["calibrate", "--port", "virtual", "--board", "no_such_board", "-o", tmp_path], capsys)
    assert code == 2 and len(error_lines(err)) == 1 and "unknown board 'no_such_board'" in err


def test_no_board_on_the_port_is_exit_3(tmp_path, capsys, monkeypatch):
    from deploykit.toolchain import devices
    monkeypatch.setattr(devices, "list_devices", lambda **kw: [])   # nothing plugged in
    code, _, err = run_cli(["calibrate", "--port", "auto", "--board", "nano33ble_sense", "-o", tmp_path], capsys)
    assert code == 3 and "no connected serial port" in err
    assert not (tmp_path / "nano33ble_sense.cost.toml").exists()


def test_a_port_that_is_not_there_is_refused_before_any_build(tmp_path, capsys, monkeypatch):
    from deploykit.firmware import render
    monkeypatch.setattr(render, "render", lambda *a, **k: pytest.fail("rendered for a port that is not there"))
    code, _, err = run_cli(["calibrate", "--port", tmp_path / "ttyACM9", "--board", "nano33ble_sense",
                            "-o", tmp_path], capsys)
    assert code == 2 and "ttyACM9 does not exist" in err   # a wrong --port is bad input, as in flash and hil run


def test_a_bad_cost_file_names_the_key(tmp_path):
    (tmp_path / "virtual.cost.toml").write_text("[per_element.integer]\nwarp = 3.0\n")
    boards.set_boards_dirs([tmp_path])
    with pytest.raises(BadInput, match=r"per_element\.integer\.warp"):
        boards.load_board("virtual")


def test_a_cost_file_changes_the_virtual_boards_firmware_id(known_dir, tmp_path):
    """A run resumed on the virtual board resumes only on a board priced the same way."""
    from types import SimpleNamespace

    from deploykit.virtual_board.firmware import firmware_id
    manifest = SimpleNamespace(path=tmp_path / "manifest.json")
    manifest.path.write_text("{}")
    plain = firmware_id(manifest, boards.load_board("virtual"))
    boards.set_boards_dirs([known_dir])
    assert firmware_id(manifest, boards.load_board("virtual")) != plain
