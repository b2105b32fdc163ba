"""`deploykit inspect`: the op table, tensors, TFLM support, arena, and its bad inputs."""

from __future__ import annotations

import json

import pytest
from conftest import error_lines, run_cli


def test_inspect_json_matches_manifest(sine_manifest, capsys):
    code, out, err = run_cli(["inspect", str(sine_manifest.model_path), "--json"], capsys)
    err = error_lines(err)
    assert code == 0, err
    r = json.loads(out)
    assert r["ops"] == [{"op": "FULLY_CONNECTED", "count": 3, "macs": 16 + 16 * 16 + 16}]
    assert r["inputs"] == sine_manifest["inputs"] and r["outputs"] == sine_manifest["outputs"]
    assert r["size"] == sine_manifest["model_bytes"]
    assert r["arena"]["measured"]["host_recorded"] == sine_manifest["arena"]["host_recorded"]
    assert set(r["arena"]["projected"]) >= {"cortex-m-reference", "cortex-m-cmsis-nn", "esp32-esp-nn"}


def test_inspect_text_says_measured_and_projected(converted_examples, capsys):
    m = converted_examples["gestures"]
    code, out, err = run_cli(["inspect", str(m.model_path)], capsys)
    err = error_lines(err)
    assert code == 0, err
    assert "CONV_2D" in out and "MAX_POOL_2D" in out and "SOFTMAX" in out
    assert "measured on this host" in out and "projected for cortex-m-reference" in out


def test_inspect_agreement_on_test_data(sine_manifest, capsys):
    code, out, err = run_cli(["inspect", str(sine_manifest.model_path), "--json", "--test-data",
                              str(sine_manifest.source_path("test_data"))], capsys)
    err = error_lines(err)
    assert code == 0, err
    a = json.loads(out)["agreement"]
    assert a["samples"] == 1000 and a["exact_fraction"] > 0.9 and a["max_abs_steps"] <= 2


def assert_refused(args, capsys, *words):
    code, out, err = run_cli(args, capsys)
    err = error_lines(err)
    assert code == 2 and out == "" and len(err) == 1, (code, out, err)
    for word in words:
        assert word in err[0], err[0]


def test_missing_path(tmp_path, capsys):
    assert_refused(["inspect", str(tmp_path / "absent.tflite")], capsys, "does not exist")


def test_not_a_model(tmp_path, capsys):
    f = tmp_path / "x.tflite"
    f.write_text("just text, no flatbuffer here at all")
    assert_refused(["inspect", str(f)], capsys, "not a TFLite flatbuffer")


@pytest.mark.parametrize("cut", [40, 600, 2000, -8])
def test_truncated(tmp_path, capsys, sine_manifest, cut):
    f = tmp_path / "cut.tflite"
    f.write_bytes(sine_manifest.model_bytes()[:cut])
    assert_refused(["inspect", str(f)], capsys, "truncated or corrupted")


def test_corrupted_indices(tmp_path, capsys, sine_manifest):
    """Overwrite the operator table's offsets with garbage: refused, the process survives."""
    data = bytearray(sine_manifest.model_bytes())
    for i in range(8, 200):
        data[i] = 0xFF
    f = tmp_path / "corrupt.tflite"
    f.write_bytes(bytes(data))
    assert_refused(["inspect", str(f)], capsys, "corrupted")


def test_op_tflm_lacks(tmp_path, capsys, atan2_tflite):
    assert_refused(["inspect", str(atan2_tflite)], capsys, "ATAN2", "no kernel")


def test_bad_test_data(tmp_path, capsys, sine_manifest):
    import numpy as np
    data = tmp_path / "d.npy"
    np.save(data, np.zeros((4, 3), np.float32))
    assert_refused(["inspect", str(sine_manifest.model_path), "--test-data", str(data)], capsys, "[3]", "[1]")


def test_inspect_never_imports_tensorflow(converted_examples):
    """inspect stays fast: a fresh interpreter, the flatbuffer schema and TFLM only."""
    import subprocess
    import sys
    m = converted_examples["gestures"]
    code = ("import sys; from deploykit.model.inspect import inspect_model; "
            f"inspect_model({str(m.model_path)!r}, {str(m.source_path('test_data'))!r}); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras')))")
    import os
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_per_tensor_fc_runs_on_every_board(sine_manifest, capsys):
    """deploykit's own int8 model (per-tensor FC) is cleared for every board, and the text says nothing of it."""
    from deploykit.firmware.boards import all_boards
    code, out, err = run_cli(["inspect", str(sine_manifest.model_path), "--json"], capsys)
    assert code == 0, err
    p = json.loads(out)["per_channel_fc"]
    assert p["weights"] == [] and p["boards_refused"] == [] and p["way_through"] is None
    assert p["boards_ok"] == [b.id for b in all_boards()]
    code, out, err = run_cli(["inspect", str(sine_manifest.model_path)], capsys)
    assert "per-channel" not in out
