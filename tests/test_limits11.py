"""Board limits (issue 11): outputs larger than a frame cross frames (RESULT_PART) on every
side; one fit check for render, deploy and the virtual board; refusals with both numbers."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from conftest import converter_in_process

from deploykit.cli import main
from deploykit.errors import BadInput
from deploykit.firmware import fit
from deploykit.firmware.boards import all_boards, load_board
from deploykit.firmware.render import plan
from deploykit.protocol.messages import results_chunked

OUT_ELEMENTS = 640


def cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    """A tiny seeded Keras autoencoder-like model with a 640-element int8 output, converted."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    tf = tf_backend.tf()
    tf.keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("ae640")
    model = tf.keras.Sequential([tf.keras.Input((16,)), tf.keras.layers.Dense(8, activation="relu"),
                                 tf.keras.layers.Dense(OUT_ELEMENTS)])
    model.save(root / "ae.keras")
    x = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    np.savez(root / "rep.npz", x=x)
    np.savez(root / "test.npz", x=x[:12])
    with converter_in_process():
        return convert(root / "ae.keras", root / "out", name="ae640", quantize="int8",
                       rep_data=root / "rep.npz", test_data=root / "test.npz")


def test_640_element_output_renders_for_every_board_it_fits(autoencoder):
    """Before: 'the model's output record (640 bytes) does not fit one RESULT frame' on every board."""
    chunked = []
    for board in all_boards():
        p = plan(autoencoder.path, board.id)
        assert p.context["out_record"] == OUT_ELEMENTS
        if results_chunked(OUT_ELEMENTS, p.context["macros"]["DK_MAX_PAYLOAD"]):
            chunked.append(board.id)
    assert "nano33ble_sense" in chunked and "virtual" in chunked  # small windows: outputs in parts


def test_640_element_output_runs_on_the_virtual_board_through_hil_run(autoencoder, tmp_path, capsys):
    """The virtual board sends RESULT_PARTs for the nano33ble_sense window; the host reassembles them."""
    board = load_board("nano33ble_sense")
    assert results_chunked(OUT_ELEMENTS, fit.max_payload(board))
    out = tmp_path / "r"
    code, stdout, err = cli(capsys, "hil", "run", "--manifest", str(autoencoder.path), "--port",
                            f"virtual://{autoencoder.path}?pacing=0&board=nano33ble_sense", "-o", str(out),
                            "--quiet")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]
    done = [r for r in rows if "outputs" in r or "output" in r]
    assert len(done) == 12


def test_virtual_board_refuses_an_arena_beyond_the_boards_ram(sine_manifest):
    """Before: the virtual board served any arena; now it checks the board's RAM budget."""
    from deploykit.virtual_board import build_firmware
    board = load_board("nano33ble_sense")
    budget = board.ram_bytes - board.runtime_ram_bytes
    with pytest.raises(BadInput) as info:
        build_firmware(sine_manifest, board, arena_configured=budget + 16)
    msg = str(info.value)
    assert f"{budget + 16:,} B of arena" in msg and f"{board.ram_bytes:,} B of RAM" in msg
    assert f"less {board.runtime_ram_bytes:,} B for its runtime" in msg and "nano33ble_sense" in msg


def test_virtual_board_refuses_records_its_boards_firmware_cannot_buffer(autoencoder):
    """A board whose RAM holds the arena but not the 640-byte output buffer: refused, naming RAM."""
    from deploykit.virtual_board import build_firmware
    board = load_board("nano33ble_sense")
    arena = fit.board_arena({board.arena_class: autoencoder.arena_projection(board.arena_class, board.id)},
                            {}, board)
    need = fit.measure(autoencoder, board, len(autoencoder.model_bytes()), arena)
    assert need.protocol_ram > OUT_ELEMENTS  # the output record is buffered whole
    tight = dataclasses.replace(board, ram_bytes=board.runtime_ram_bytes + need.ram_need - 1)
    with pytest.raises(BadInput, match="protocol buffers.*does not fit"):
        build_firmware(autoencoder, tight)
    build_firmware(autoencoder, dataclasses.replace(board, ram_bytes=board.runtime_ram_bytes + need.ram_need))


def test_virtual_board_run_refused_with_exit_2(sine_manifest, tmp_path, capsys):
    """A manifest whose arena (400,000 B projected) exceeds nano33ble_sense's RAM: `hil run` on the
    virtual board standing in for it refuses with both numbers, as render does (before: it ran)."""
    arena = dict(sine_manifest["arena"])
    arena["projections"] = {k: 400_000 for k in arena["projections"]}
    target = tmp_path / "m"
    target.mkdir()
    shutil.copy(sine_manifest.model_path, target / sine_manifest["model_file"])
    (target / "manifest.json").write_text(json.dumps(dict(sine_manifest.data, arena=arena)))
    code, _, err = cli(capsys, "hil", "run", "--manifest", str(target / "manifest.json"), "--port",
                       f"virtual://{target / 'manifest.json'}?pacing=0&board=nano33ble_sense",
                       "-o", str(tmp_path / "r"), "--quiet")
    assert code == 2, err
    assert "440,000 B of arena" in err and "262,144 B of RAM" in err and "Traceback" not in err


def test_render_refusal_names_both_numbers(sine_manifest, tmp_path, capsys):
    board = load_board("nano33ble_sense")
    code, _, err = cli(capsys, "render", str(sine_manifest.path), "--board", "nano33ble_sense",
                       "--arena-size", "300000", "-o", str(tmp_path / "p"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs 300,000 B of arena" in err and f"{board.ram_bytes:,} B of RAM" in err
    assert f"less {board.runtime_ram_bytes:,} B for its runtime" in err
    assert "it fits" in err and "teensy41" in err  # where it does go, at the default arena
    assert not (tmp_path / "p").exists()


def test_inspect_prints_a_per_board_fit_table(sine_manifest, capsys):
    code, out, err = cli(capsys, "inspect", str(sine_manifest.model_path))
    assert code in (0, None), err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("BOARD"))
    assert "RAM BUDGET" in lines[head] and "FLASH BUDGET" in lines[head]
    table = {line.split()[0]: line for line in lines[head + 1:] if line.strip() and not line.startswith("-")}
    for board in all_boards():
        budget = f"{board.ram_bytes - board.runtime_ram_bytes:,}"
        assert board.id in table and budget in table[board.id] and table[board.id].endswith("fits")


def test_inspect_json_fit_rows_and_a_model_that_fits_no_board(sine_manifest, capsys):
    code, out, _ = cli(capsys, "inspect", str(sine_manifest.model_path), "--json")
    rows = json.loads(out)["board_fit"]
    teensy = next(r for r in rows if r["board"] == "teensy41")
    assert teensy["fits"] and teensy["ram_need"] == teensy["arena"] + teensy["protocol_ram"]
    huge = [dict(r, ram_budget=r["ram_need"] - 1, fits=False) for r in rows]
    with pytest.raises(BadInput) as info:
        fit.check_any(huge, "big")
    msg = str(info.value)
    smallest = min(r["ram_need"] for r in rows)
    largest = max(huge, key=lambda r: (r["ram_budget"], r["flash_budget"]))
    assert "fits no board" in msg and f"{smallest:,} B of RAM" in msg and largest["board"] in msg


def test_virtual_board_frames_stay_within_max_payload_for_a_640_byte_output(autoencoder):
    """Before: the virtual board sent one 650-byte RESULT to a board whose frames carry ~60."""
    from deploykit.protocol import FrameDecoder, Input, ResultPart, decode_message, encode_message
    from deploykit.virtual_board import DeviceEngine, build_firmware
    fw = build_firmware(autoencoder, load_board("nano33ble_sense"))
    engine = DeviceEngine(fw, timed=False)
    record = bytes(range(fw.in_record))
    engine.receive(encode_message(Input(0, record), 0), 1.0)
    frames = [f for _, wire, framed in engine.out if framed for f in FrameDecoder(1 << 16).feed(wire)]
    assert frames and all(len(f.payload) <= fw.hello.max_payload for f in frames)
    parts = [m for m in (decode_message(f, fw.hello) for f in frames) if isinstance(m, ResultPart)]
    assert b"".join(p.data for p in parts) == fw.infer(record)


def test_lost_and_duplicated_result_parts_are_recovered(autoencoder, tmp_path, capsys):
    """Corrupted bytes break some RESULT_PARTs and duplicates repeat others: the host joins only
    whole records (a gap drops the record, the stream recovery resends it), all exact."""
    out = tmp_path / "r"
    code, _, err = cli(capsys, "hil", "run", "--manifest", str(autoencoder.path), "--port",
                       f"virtual://{autoencoder.path}?pacing=0&board=nano33ble_sense"
                       f"&faults=corrupt%3D0.0005%2Cdup%3D0.2&seed=3", "-o", str(out), "--quiet")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert report["samples"] == 12 and report["samples_failed"] == 0
    assert report["faults"]["crc_errors"] > 0 and report["faults"]["resyncs"] > 0  # parts were lost
