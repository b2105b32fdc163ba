"""Models whose conversion crashes TensorFlow: contained in a child, recurrent ones unrolled."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import run_cli

from deploykit.errors import RigError


def crashing_converter(path, fmt, mode, rep_x, unroll=False):
    """Stands in for TensorFlow's converter dying in C++ (module level: it runs in a child)."""
    os.abort()


@pytest.fixture
def tiny_keras(tmp_path):
    from deploykit.model import tf_backend
    keras = tf_backend.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.save(tmp_path / "tiny.keras")
    np.savez(tmp_path / "rep.npz", x=np.random.default_rng(0).random((8, 4), dtype=np.float32))
    return tmp_path


def test_a_converter_crash_is_one_line_exit_3_and_writes_nothing(tiny_keras, mocker, capsys):
    mocker.patch("deploykit.model.tf_backend.convert", crashing_converter)
    code = run_cli(["convert", str(tiny_keras / "tiny.keras"), "--rep-data", str(tiny_keras / "rep.npz"),
                    "-o", str(tiny_keras / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 == RigError.exit_code
    assert len(err) == 1 and "converter crashed (signal SIGABRT)" in err[0] and "Traceback" not in err[0]
    assert not (tiny_keras / "out").exists()


@pytest.mark.slow
def test_int8_lstm_converts_unrolled_and_runs_on_tflm(tmp_path, capsys):
    """TF 2.21's converter segfaults on the int8 fused LSTM (exit 139, nothing printed, was
    the whole deploykit process); the unrolled clone with the same weights converts and runs."""
    from deploykit.model import tf_backend
    from deploykit.model.tflm_host import TflmRunner
    keras = tf_backend.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 3)), keras.layers.LSTM(6), keras.layers.Dense(2)])
    model.save(tmp_path / "lstm.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((16, 12, 3), dtype=np.float32), y=rng.integers(0, 2, 16))
    code = run_cli(["convert", str(tmp_path / "lstm.keras"), "--rep-data", str(tmp_path / "data.npz"),
                    "--test-data", str(tmp_path / "data.npz"), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code in (0, None) and "recurrent layers unrolled" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"]["recurrent_unrolled"] is True
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in {o["op"] for o in manifest["ops"]}
    assert manifest["report"]["tflm_host_vs_litert"]["samples"] == 16
    runner = TflmRunner((tmp_path / "out" / "model.tflite").read_bytes())
    x = np.zeros(runner.input_specs[0]["shape"], dtype=runner.input_specs[0]["dtype"])
    assert len(runner.invoke_raw([x.tobytes()])[0]) == 2
