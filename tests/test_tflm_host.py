"""TFLM on the host: raw and batched inference, arena measurement, crash isolation."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.errors import BadInput
from deploykit.model import tflm_host
from deploykit.model.quantization import to_input_dtype


def test_specs_match_manifest(sine_manifest):
    r = tflm_host.TflmRunner(sine_manifest.model_bytes())
    assert r.input_specs == sine_manifest["inputs"] and r.output_specs == sine_manifest["outputs"]


def test_invoke_raw_equals_predict(converted_examples):
    m = converted_examples["gestures"]
    r = tflm_host.TflmRunner(m.model_bytes())
    x = np.load(m.source_path("test_data"))["x"][:5]
    xq = to_input_dtype(x, m["inputs"][0])
    batch = r.predict(xq)
    for i in range(5):
        raw = r.invoke_raw([xq[i].tobytes()])[0]
        assert np.array_equal(np.frombuffer(raw, np.int8), batch[i])
    assert batch.shape == (5, 4) and batch.dtype == np.int8


def test_invoke_raw_refuses_wrong_size(sine_manifest):
    r = tflm_host.TflmRunner(sine_manifest.model_bytes())
    with pytest.raises(BadInput, match="needs 1"):
        r.invoke_raw([b"\x00\x00"])


def test_predict_refuses_float_for_int8(sine_manifest):
    with pytest.raises(BadInput, match="quantize"):
        tflm_host.TflmRunner(sine_manifest.model_bytes()).predict(np.zeros((2, 1), np.float32))


def test_measure_arena_finds_the_smallest_arena(sine_manifest):
    model = sine_manifest.model_bytes()
    a = tflm_host.measure_arena(model)
    assert a["host_recorded"] == a["head"] + a["tail"]
    assert sum(c["used"] for c in a["categories"].values()) <= a["tail"]
    assert a["host_min"] % 16 == 0
    assert tflm_host._fits(model, a["host_min"]) and not tflm_host._fits(model, a["host_min"] - 16)


def test_too_small_arena_is_refused_not_crashed(sine_manifest):
    with pytest.raises(BadInput, match="arena"):
        tflm_host.TflmRunner(sine_manifest.model_bytes(), arena_size=256)
    # The too-small arena crashed only a forked child: this process still runs TFLM.
    runner = tflm_host.TflmRunner(sine_manifest.model_bytes())
    assert runner.predict(np.zeros((1, 1), np.int8)).shape == (1, 1)


def test_supported_ops_read_from_the_installed_tflm():
    ops = tflm_host.supported_ops()
    assert {"FULLY_CONNECTED", "CONV_2D", "SOFTMAX"} <= set(ops) and "ATAN2" not in ops


def test_allocation_lines_parse():
    text = ("[RecordingMicroAllocator] Arena allocation total 100 bytes\n"
            "[RecordingMicroAllocator] Arena allocation head 20 bytes\n"
            "[RecordingMicroAllocator] Arena allocation tail 80 bytes\n"
            "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 48 bytes with alignment overhead "
            "(requested 48 bytes for 2 allocations)\n")
    a = tflm_host.parse_allocations(text)
    assert a["total"] == 100 and a["categories"]["TfLiteEvalTensor data"] == {"used": 48, "requested": 48, "count": 2}


def test_probes_never_fork_the_calling_process(monkeypatch):
    """TFLM probes run in children of deploykit's probe server: the caller (which may have
    TensorFlow's threads running) is never forked, so Python 3.12's fork-with-threads hazard
    cannot arise."""
    import os

    from deploykit.model import isolated

    def no_fork():
        raise AssertionError("os.fork called in the process that runs the probes")

    monkeypatch.setattr(os, "fork", no_fork)
    crash = isolated.run_isolated(os.abort)
    assert not crash.ok and crash.status == "signal SIGABRT"
    assert isolated.run_isolated(divmod, 7, 2).value == (3, 1)


@pytest.mark.slow
def test_arena_is_searched_not_guessed(tmp_path):
    """A small CNN on 64x64 inputs needs over 100 KB of arena with a model of a few KB: the
    old probe arena, max(10 x model bytes, 64 KB), refused it as 'TFLM cannot load'."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert

    keras = tf_backend.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    model.save(tmp_path / "cnn.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rep.npz", x=rng.random((8, 64, 64, 3), dtype=np.float32))
    manifest = convert(tmp_path / "cnn.keras", tmp_path / "out", rep_data=tmp_path / "rep.npz",
                       test_data=tmp_path / "rep.npz")
    model_bytes = (tmp_path / "out" / "model.tflite").read_bytes()
    measured = tflm_host.measure_arena(model_bytes)
    assert len(model_bytes) * 10 < 64 * 1024 < measured["host_min"] <= measured["host_recorded"] + 16
    runner = tflm_host.TflmRunner(model_bytes)
    assert runner.arena_size >= measured["host_min"]
    assert manifest.data["arena"]["host_min"] == measured["host_min"]


def test_a_user_script_without_a_main_guard_is_not_run_again(tmp_path):
    """multiprocessing's forkserver re-imports the caller's main script in every child: a
    user's script without `if __name__ == "__main__":` ran its top level again (and failed)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "user_script.py"
    script.write_text("from deploykit.model import isolated\n"
                      "print('top level ran')\n"
                      "print('answer', isolated.run_isolated(divmod, 7, 2).value)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("top level ran") == 1 and "answer (3, 1)" in done.stdout
