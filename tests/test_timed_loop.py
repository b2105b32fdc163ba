"""`hil run --timed-loop SECONDS`: one record back to back on the device, five times.

On the virtual board the loop is answered from the cost model in simulated time: a
30-second loop takes no 30 seconds of the test, its per-inference figure is the board's
simulated latency, and the report shows the five runs and their median beside the
per-sample distribution. A firmware built without TIMED_LOOP is refused with exit 2
naming `render --diagnostics`. (The C++ core's side is in the conversation vectors.)
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import run_cli

from deploykit.harness.calibrate_models import mac_model
from deploykit.model.convert import convert
from deploykit.protocol import (
    Capability,
    FrameDecoder,
    Input,
    TimedLoop,
    TimedLoopRequest,
    decode_message,
    encode_message,
)
from deploykit.virtual_board import DeviceEngine, VirtualBoard, build_firmware
from deploykit.virtual_board.engine import loop_iterations


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small convolutional model (no TensorFlow: written directly) and six input records."""
    root = tmp_path_factory.mktemp("timed")
    (root / "net.tflite").write_bytes(mac_model("int8"))
    manifest = convert(root / "net.tflite", root / "model", name="net")
    np.save(root / "x.npy", np.random.default_rng(0).normal(0, 1, (6, 12, 12, 2)).astype(np.float32))
    return manifest, root / "x.npy"


def _url(manifest) -> str:
    return f"virtual://{manifest.path}?pacing=0"


def test_timed_loop_in_the_reports_from_simulated_time(model_dir, tmp_path, capsys):
    manifest, data = model_dir
    out = tmp_path / "out"
    code, stdout, err = run_cli(["hil", "run", "-m", manifest.path, "--port", _url(manifest), "--data", data,
                                 "--quiet", "--timed-loop", "30", "-o", out], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    loop = report["timed_loop"]
    per_sample = report["latency"]["us"]["p50"]
    assert len(loop["runs"]) == 5 and loop["simulated"] and loop["seconds"] == 30
    assert loop["iterations"] == [math.ceil(30e6 / per_sample)] * 5
    assert loop["median_us"] == pytest.approx(per_sample)
    assert all(r["micros"] >= 30e6 for r in loop["runs"])
    assert report["duration_s"] < 30, "the virtual board reports simulated time, it does not sleep"
    md = (out / "report.md").read_text()
    assert "Timed loop" in md and f"the per-sample p50 is {per_sample:,.0f} µs" in md
    assert md.index("Timed loop") > md.index("Latency")   # beside the distribution
    assert "Timed loop" in (out / "report.html").read_text()
    assert "timed loop: median" in stdout


def test_a_firmware_without_the_timed_loop_is_refused_with_exit_2(model_dir, tmp_path, capsys):
    manifest, data = model_dir
    board = VirtualBoard(manifest.path, pacing=False)
    fw = board.engine.fw
    fw.hello = dataclasses.replace(fw.hello, capabilities=int(Capability.OP_TIMING | Capability.TENSOR_DUMP))
    board.engine.out.clear()
    board.engine.power_on(0.0)   # boot again: HELLO without TIMED_LOOP
    with board as port:
        code, _, err = run_cli(["hil", "run", "-m", manifest.path, "--port", port, "--data", data, "--quiet",
                                "--timed-loop", "1", "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert "not built with --diagnostics" in err and "TIMED_LOOP" in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.parametrize("value", ["0", "-2", "nan"])
def test_a_bad_timed_loop_value_is_exit_2(model_dir, tmp_path, capsys, value):
    manifest, data = model_dir
    code, _, err = run_cli(["hil", "run", "-m", manifest.path, "--port", _url(manifest), "--data", data,
                            "--quiet", "--timed-loop", value, "-o", tmp_path], capsys)
    assert code == 2 and f"--timed-loop {float(value)}" in err


def test_a_paced_virtual_board_answers_after_the_simulated_loop(model_dir):
    """With pacing, the answer leaves the board once the loop's simulated time has passed."""
    manifest, _ = model_dir
    from deploykit.firmware.boards import load_board
    fw = build_firmware(manifest, load_board("virtual"))
    engine = DeviceEngine(fw, timed=True, boot_seconds=0.0)
    engine.take_output(1.0)
    record, step = bytes(fw.in_record), fw.hello.max_payload - 8
    for seq, off in enumerate(range(0, len(record), step)):   # INPUT frames within max_payload
        engine.receive(encode_message(Input(off, record[off:off + step]), seq), 1.0)
    asked = 2.0 + fw.timing.seconds     # the inference has finished
    engine.take_output(asked)
    engine.receive(encode_message(TimedLoopRequest(0, 2000), 9), asked)
    n = loop_iterations(fw.timing.micros, 2000)
    assert n == math.ceil(2e6 / fw.timing.micros)

    def answers(t):
        wire = b"".join(data for _, data, is_frame in engine.take_output(t) if is_frame)
        frames = FrameDecoder(1 << 16).feed(wire)
        return [m for m in (decode_message(f, fw.hello) for f in frames) if isinstance(m, TimedLoop)]

    assert answers(asked + n * fw.timing.seconds - 0.01) == []
    (got,) = answers(asked + n * fw.timing.seconds + 0.01)
    assert (got.iterations, got.micros, got.cycles) == (n, n * fw.timing.micros, n * fw.timing.cycles)
