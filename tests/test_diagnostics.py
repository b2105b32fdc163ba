"""Per-operator timing and the layer-by-layer comparison, on the virtual board.

The virtual board answers OP_TIMING_REQ from its cost model (one figure per operator)
and TENSOR_DUMP_REQ from TFLM keeping every tensor; `hil run --op-timing` tabulates the
first, `--layer-diff` compares the second with TFLM on the host and must name exactly
the operator the perturb_op fault miscomputes. A firmware without the capability is
refused with exit 2 before anything runs.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deploykit.cli import main
from deploykit.errors import BadInput
from deploykit.firmware.boards import load_board
from deploykit.harness.run import run_hil
from deploykit.model import tflite_model
from deploykit.model.tflm_layers import LayerRunner
from deploykit.protocol import (
    Begin,
    ErrorCode,
    ErrorMsg,
    FrameDecoder,
    Input,
    ResultBatch,
    decode_message,
    encode_message,
)
from deploykit.protocol.messages import OpTimes, OpTimingRequest, TensorChunk, TensorDumpRequest
from deploykit.virtual_board import DeviceEngine, VirtualBoard, build_firmware, parse_faults
from deploykit.virtual_board.cost import op_cycles

pytestmark = pytest.mark.slow  # trains and converts the examples once per session


def _url(manifest, faults: str = "") -> str:
    return f"virtual://{manifest.path}?pacing=0" + (f"&faults={faults}" if faults else "")


class Engine:
    """A virtual board's protocol engine, spoken to frame by frame without a wire."""

    def __init__(self, manifest, board="virtual", faults=None):
        self.fw = build_firmware(manifest, load_board(board))
        self.engine = DeviceEngine(self.fw, faults, timed=False)
        self.seq, self.t = 0, 1.0
        self.ask()  # drain the boot HELLO and LOG

    def ask(self, *msgs) -> list:
        for msg in msgs:
            self.engine.receive(encode_message(msg, self.seq), self.t)
            self.seq += 1
        self.t += 1.0
        wire = b"".join(data for _, data, is_frame in self.engine.take_output(self.t) if is_frame)
        return [decode_message(f, self.fw.hello) for f in FrameDecoder(1 << 16).feed(wire)]

    def run(self, record: int, data: bytes) -> list:
        return self.ask(Begin(record), Input(record * len(data), data))


def test_virtual_board_answers_op_timing_from_its_cost_model(sine_manifest):
    dev = Engine(sine_manifest)
    record = np.int8(17).tobytes()
    dev.run(3, record)
    answer = [m for m in dev.ask(OpTimingRequest(3)) if isinstance(m, OpTimes)]
    ops = tflite_model.parse(sine_manifest.model_bytes()).operators
    board = load_board("virtual")
    assert sum(len(m.entries) for m in answer) == answer[0].total == len(ops)
    for (_index, code, ticks), op in zip([e for m in answer for e in m.entries], ops, strict=False):
        assert code == 9  # FULLY_CONNECTED
        assert ticks == op_cycles(op, board)  # the full per-operator cost (shapes, output elements)
    assert dev.fw.hello.simulated


def test_virtual_board_dumps_every_operator_output_like_tflm(converted_examples):
    manifest = converted_examples["gestures"]
    dev = Engine(manifest)
    record = bytes(np.random.default_rng(1).integers(-128, 128, 96, dtype=np.int8).view(np.uint8))
    result = next(m for m in dev.run(0, record) if isinstance(m, ResultBatch))
    chunks = [m for m in dev.ask(TensorDumpRequest(0)) if isinstance(m, TensorChunk)]
    assert chunks[-1].last and max(len(c.payload()) for c in chunks) <= dev.fw.hello.max_payload
    got: dict[tuple[int, int], bytearray] = {}
    for c in chunks:
        got.setdefault((c.op, c.output), bytearray(c.total))[c.offset:c.offset + len(c.data)] = c.data
    want = LayerRunner(manifest.model_bytes()).run([record])
    assert len({c.op for c in chunks}) == len(want) > 3
    for op, outputs in enumerate(want):
        for k, out in enumerate(outputs):
            assert bytes(got[(op, k)]) == out.data, f"operator {op} output {k}"
    assert bytes(got[(len(want) - 1, 0)]) == result.outputs[0]  # the last operator's output is the RESULT's


def test_virtual_board_refuses_requests_about_another_record_or_without_the_capability(sine_manifest):
    dev = Engine(sine_manifest)
    assert [(m.code, m.detail) for m in dev.ask(OpTimingRequest(0)) if isinstance(m, ErrorMsg)] == \
        [(ErrorCode.NOT_RUN, 0)]
    dev.run(2, b"\x05")
    assert [(m.code, m.detail) for m in dev.ask(TensorDumpRequest(1)) if isinstance(m, ErrorMsg)] == \
        [(ErrorCode.NOT_RUN, 1)]
    dev.fw.hello = dataclasses.replace(dev.fw.hello, capabilities=0)
    assert [m.code for m in dev.ask(OpTimingRequest(2)) if isinstance(m, ErrorMsg)] == [ErrorCode.UNKNOWN_TYPE]


@pytest.mark.parametrize("op", [1, 3])
def test_layer_diff_names_exactly_the_perturbed_operator(converted_examples, tmp_path, op):
    manifest = converted_examples["gestures"]
    report = run_hil(manifest.path, _url(manifest, f"perturb_op={op}"), limit=12, warmup=0, outdir=tmp_path,
                     float_reference=False, diagnostics=_options(layer_diff="auto"))
    records = report["layer_diff"]["records"]
    assert records, "the perturbed board's outputs differ from TFLM on the host on some record"
    for rec in records:
        assert rec["first_diverging"]["index"] == op
        assert all(o["max_abs_steps"] == 0 for o in rec["ops"][:op])
        assert rec["growth"][0]["index"] == op and rec["growth"][-1]["index"] == len(rec["ops"]) - 1
    assert f"first diverging operator #{op}" in (tmp_path / "report.md").read_text()


def test_layer_diff_of_a_clean_board_finds_no_divergence(converted_examples, tmp_path):
    manifest = converted_examples["gestures"]
    report = run_hil(manifest.path, _url(manifest), limit=6, warmup=0, outdir=tmp_path,
                     float_reference=False, diagnostics=_options(layer_diff="4"))
    (rec,) = report["layer_diff"]["records"]
    assert rec["record"] == 4 and rec["first_diverging"] is None and len(rec["ops"]) > 3


def test_op_timing_table_in_the_reports(converted_examples, tmp_path):
    manifest = converted_examples["gestures"]
    report = run_hil(manifest.path, _url(manifest), limit=20, warmup=0, outdir=tmp_path,
                     float_reference=False, diagnostics=_options(op_timing=4))
    table = report["op_timing"]
    ops = tflite_model.parse(manifest.model_bytes()).operators
    assert table["records"] == [0, 6, 13, 19] and table["simulated"]
    assert [r["op"] for r in table["ops"]] == [o.op for o in ops]
    assert [r["macs"] for r in table["ops"]] == [o.macs for o in ops]
    assert sum(r["share"] for r in table["ops"]) == pytest.approx(1.0)
    assert table["total_cycles_p50"] == pytest.approx(sum(r["cycles_p50"] for r in table["ops"]))
    conv = next(r for r in table["ops"] if r["op"] == "CONV_2D")
    assert conv["macs_per_cycle"] == pytest.approx(conv["macs"] / conv["cycles_p50"])
    assert conv["inputs"][0] == [1, 1, 32, 3] and conv["outputs"] == [[1, 1, 28, 8]]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["op_timing"]["ops"][1]["op"] == table["ops"][1]["op"]
    assert "## Per-operator timing" in (tmp_path / "report.md").read_text()
    assert 'alt="cycles per operator"' in (tmp_path / "report.html").read_text()


def test_a_firmware_without_diagnostics_is_refused_with_exit_2(converted_examples, tmp_path, capsys):
    manifest = converted_examples["gestures"]
    board = VirtualBoard(manifest.path, pacing=False)
    board.engine.fw.hello = dataclasses.replace(board.engine.fw.hello, capabilities=0)
    board.engine.out.clear()
    board.engine.power_on(0.0)  # boot again: the HELLO announces a build without the capabilities
    with board as port, pytest.raises(SystemExit) as info:
        main(["hil", "run", "-m", str(manifest.path), "--port", port, "--quiet", "--op-timing", "3",
              "-o", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "not built with --diagnostics" in err and "OP_TIMING" in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.parametrize("args, phrase", [(["--op-timing", "0"], "--op-timing 0"),
                                          (["--layer-diff", "first"], "--layer-diff 'first'")])
def test_bad_diagnostics_options_exit_2(sine_manifest, tmp_path, capsys, args, phrase):
    with pytest.raises(SystemExit) as info:
        main(["hil", "run", "-m", str(sine_manifest.path), "--port", _url(sine_manifest), "--quiet",
              "-o", str(tmp_path), *args])
    assert info.value.code == 2 and phrase in capsys.readouterr().err


def test_perturb_fault_spec():
    assert parse_faults("perturb_op=3").perturb_op == 3
    with pytest.raises(BadInput, match="operator index"):
        parse_faults("perturb_op=-1")


def _options(op_timing=None, layer_diff=None):
    from deploykit.harness.diagnostics import DiagnosticsOptions
    return DiagnosticsOptions.parse(op_timing, layer_diff)


def test_perturbing_an_operator_the_model_lacks_is_bad_input(sine_manifest):
    with pytest.raises(BadInput, match=r"perturb_op=9: the model has operators 0\.\.2"):
        DeviceEngine(build_firmware(sine_manifest, load_board("virtual")), parse_faults_obj("perturb_op=9"))


def parse_faults_obj(spec: str):
    from deploykit.virtual_board import FaultInjector
    return FaultInjector(spec)


def test_layer_diff_survives_a_lossy_link(converted_examples, tmp_path):
    """Dropped and corrupted bytes: the dump is asked for again in smaller chunks, pieces kept."""
    manifest = converted_examples["gestures"]
    report = run_hil(manifest.path, _url(manifest, "drop=0.003,corrupt=0.003,perturb_op=2") + "&seed=2", limit=4,
                     warmup=0, outdir=tmp_path, float_reference=False,
                     diagnostics=_options(op_timing=2, layer_diff="1"))
    (rec,) = report["layer_diff"]["records"]
    assert rec["first_diverging"]["index"] == 2
    assert len(report["op_timing"]["ops"]) == len(rec["ops"])
    assert report["faults"]["crc_errors"] > 0
