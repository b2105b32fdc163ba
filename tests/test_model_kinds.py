"""Every kind of model a user brings, end to end (issue 11): Keras inputs (.keras, .h5,
SavedModel) converted by deploykit, and .tflite files taken as they are (float32, int8
per tensor, int8 per channel, uint8 I/O, int16x8). Each goes convert -> inspect -> render
for every board it fits (a refusal naming both numbers on the others) -> the virtual board
-> `hil run` -> report, and the device's outputs must equal TFLM's on the host exactly.

One small seeded classifier (seconds to train) is the source of every kind, built once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from deploykit.errors import BadInput
from deploykit.firmware import render
from deploykit.firmware.boards import all_boards

FEATURES, CLASSES = 8, 3


def _data(n: int, seed: int):
    """Three classes set apart by the sign of two sums of the features."""
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
    a, b = x[:, :4].sum(1), x[:, 4:].sum(1)
    y = np.where(a > 0.5, 0, np.where(b > 0, 1, 2)).astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """name -> model path: the Keras files and the .tflite kinds, all from one trained model."""
    from deploykit.model import tf_backend
    tf = tf_backend.tf()
    root = tmp_path_factory.mktemp("kinds")
    tf.keras.utils.set_random_seed(0)
    x, y = _data(600, 0)
    model = tf.keras.Sequential([tf.keras.Input((FEATURES,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    tx, ty = _data(96, 1)
    np.savez(root / "rep.npz", x=x[:200])
    np.savez(root / "test.npz", x=tx, y=ty)
    paths = {"keras": root / "m.keras", "h5": root / "m.h5", "saved_model": root / "saved"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    with tf_backend._quiet():
        model.export(str(paths["saved_model"]))
    for name, data in tflite_kinds(tf, model, x[:200]).items():
        paths[name] = root / f"{name}.tflite"
        paths[name].write_bytes(data)
    paths["rep"], paths["test"] = root / "rep.npz", root / "test.npz"
    return paths


def tflite_kinds(tf, model, rep_x) -> dict[str, bytes]:
    """The .tflite files other pipelines make, by TF's own converter recipes."""
    def rep():
        for row in rep_x:
            yield [row[None]]

    def convert(ops=None, io=None, per_channel_dense=True):
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        if ops is not None:
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.representative_dataset = rep
            c.target_spec.supported_ops = [ops]
            c._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
        if io is not None:
            c.inference_input_type = c.inference_output_type = io
        with_quiet = __import__("deploykit.model.tf_backend", fromlist=["_quiet"])._quiet
        with with_quiet():
            return bytes(c.convert())

    int8, int16 = tf.lite.OpsSet.TFLITE_BUILTINS_INT8, \
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    return {"float32": convert(),
            "int8_per_tensor": convert(int8, tf.int8, per_channel_dense=False),
            "int8_per_channel": convert(int8, tf.int8),          # TF's standard recipe
            "uint8": convert(int8, tf.uint8, per_channel_dense=False),
            "int16x8": convert(int16, tf.int16, per_channel_dense=False)}


def end_to_end(manifest, tmp_path, capsys, board="nano33ble_sense") -> dict:
    """inspect -> render for every board the inspect table says it fits (refused, with both
    numbers, on the others) -> `hil run` on the virtual board as `board`; report.json."""
    code, out, err = run_cli(["inspect", manifest.model_path, "--json"], capsys)
    assert code in (0, None), err
    rows = {r["board"]: r for r in json.loads(out)["board_fit"]}
    assert set(rows) == {b.id for b in all_boards()}
    for board_id, row in rows.items():
        if row["fits"]:
            render.render(manifest.path, board_id, tmp_path / "fw" / board_id)
            assert (tmp_path / "fw" / board_id / "platformio.ini").is_file()
        else:
            with pytest.raises(BadInput) as refused:
                render.plan(manifest.path, board_id)
            assert f"{row['arena']:,} B of arena" in str(refused.value)
            assert f"({row['ram_budget']:,} B)" in str(refused.value)
    assert rows[board]["fits"]
    out_dir = tmp_path / "hil"
    code, _, err = run_cli(["hil", "run", "--manifest", manifest.path, "--port",
                            f"virtual://{manifest.path}?pacing=0&board={board}", "-o", out_dir, "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["samples"] == 96 and report["samples_failed"] == 0
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0  # the device equals TFLM on the host
    for name in ("report.md", "report.html"):
        assert "Accuracy against labels (classification)" in (out_dir / name).read_text()
    return report


def check_task_figures(manifest, report, float_source: bool) -> None:
    """The device's accuracy is TFLM-host's (the converter's report), float's is there for Keras sources."""
    acc = report["accuracy"]
    assert acc["task"] == "classification"
    assert acc["device"]["accuracy"] == pytest.approx(manifest["report"]["quantized_accuracy"])
    assert len(acc["device"]["per_class"]) == CLASSES
    assert acc["desktop"]["accuracy"] > 0.7 and acc["device"]["accuracy"] > 0.7
    assert (acc["float"] is not None) == float_source


# .keras stays in the fast loop; .h5 and SavedModel take the same path after loading (slow: each converts in a child)
@pytest.mark.parametrize("kind", ["keras", pytest.param("h5", marks=pytest.mark.slow),
                                  pytest.param("saved_model", marks=pytest.mark.slow)])
def test_keras_inputs_convert_and_run_exactly(kind, sources, tmp_path, capsys):
    """.keras, .h5 and SavedModel through `deploykit convert` (int8), then the whole way."""
    from deploykit.model.convert import convert
    m = convert(sources[kind], tmp_path / "m", name=kind, rep_data=sources["rep"], test_data=sources["test"])
    assert m["quantization"] == "int8" and m["source"]["model_format"] == kind
    assert m["inputs"][0]["dtype"] == "int8" and m["report"]["float_accuracy"] > 0.7
    report = end_to_end(m, tmp_path, capsys)
    check_task_figures(m, report, float_source=True)


@pytest.mark.parametrize("kind, label, in_dtype", [
    ("float32", "float32", "float32"),
    ("int8_per_tensor", "int8", "int8"),
    ("uint8", "uint8", "uint8"),
    ("int16x8", "int16x8", "int16"),
])
def test_tflite_taken_as_is_runs_exactly(kind, label, in_dtype, sources, tmp_path, capsys):
    """A .tflite from TF's converter, as it is: its kind named in the manifest (before: uint8 I/O
    was labelled int8-float-io and int16x8 int8), its inputs streamed in their own dtype."""
    from deploykit.model.convert import convert
    m = convert(sources[kind], tmp_path / "m", name=kind, test_data=sources["test"])
    assert m["quantization"] == label and m["inputs"][0]["dtype"] == in_dtype
    if kind == "int16x8":  # 16-bit activations are symmetric: zero point 0
        assert m["inputs"][0]["zero_point"] == 0 and m["outputs"][0]["zero_point"] == 0
    report = end_to_end(m, tmp_path, capsys)
    check_task_figures(m, report, float_source=False)


def test_int8_per_channel_refused_per_board_then_runs_per_tensor(sources, tmp_path, capsys):
    """TF's standard recipe (per-channel FULLY_CONNECTED): every board's port applies one scale, so
    render refuses it on each, naming the op and the way through; --fc-per-tensor then runs exactly."""
    from deploykit.model.convert import convert
    as_is = convert(sources["int8_per_channel"], tmp_path / "pc", test_data=sources["test"])
    code, out, _ = run_cli(["inspect", as_is.model_path, "--json"], capsys)
    assert sorted(json.loads(out)["per_channel_fc"]["boards_refused"]) == sorted(b.id for b in all_boards())
    for board in all_boards():
        with pytest.raises(BadInput, match="per-channel quantized FULLY_CONNECTED.*--fc-per-tensor"):
            render.plan(as_is.path, board.id)
    m = convert(sources["int8_per_channel"], tmp_path / "m", test_data=sources["test"], fc_per_tensor=True)
    fc = m["report"]["fc_per_tensor"]
    assert m["quantization"] == "int8" and fc["task"] == "classification"
    assert fc["before"]["accuracy"] > 0.7 and fc["after"]["accuracy"] > 0.7
    report = end_to_end(m, tmp_path, capsys)
    check_task_figures(m, report, float_source=False)


def test_deploy_keeps_task_and_class_names(sources, tmp_path, capsys, monkeypatch):
    """`deploy --task --class-names` as on convert: kept in the manifest, named in the report."""
    monkeypatch.setenv("CI", "true")
    out = tmp_path / "d"
    code, _, err = run_cli(["deploy", sources["int8_per_tensor"], "--port", "virtual", "--data", sources["test"],
                            "--task", "classification", "--class-names", "left,right,none", "-o", out,
                            "--quiet", "--no-pacing"], capsys)
    assert code == 0, err
    m = json.loads((out / "model" / "manifest.json").read_text())
    assert m["task"] == "classification" and m["class_names"] == ["left", "right", "none"]
    report = json.loads((out / "hil" / "report.json").read_text())
    assert report["classes"] == ["left", "right", "none"] and report["class_names"] == ["left", "right", "none"]
    assert [r["name"] for r in report["per_class"]] == ["left", "right", "none"]


@pytest.mark.parametrize("args, words", [
    (["--task", "clustering"], ["--task 'clustering'", "classification, regression, anomaly, none"]),
    (["--class-names", "a,b"], ["2 class name(s)", "3 classes"]),
])
def test_deploy_task_options_refused_in_one_line(args, words, sources, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    out = tmp_path / "d"
    code, _, err = run_cli(["deploy", sources["int8_per_tensor"], "--port", "virtual", "--data", sources["test"],
                            *args, "-o", out, "--quiet"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), err
    assert not out.exists()


def test_deploy_refuses_task_options_for_a_converted_manifest(sources, tmp_path, capsys, monkeypatch):
    """A manifest given as is keeps its own task: --task is refused, never silently ignored."""
    from deploykit.model.convert import convert
    monkeypatch.setenv("CI", "true")
    m = convert(sources["int8_per_tensor"], tmp_path / "m", test_data=sources["test"])
    code, _, err = run_cli(["deploy", m.path, "--port", "virtual", "--task", "regression", "-o",
                            tmp_path / "d", "--quiet"], capsys)
    assert code == 2 and "--task apply when deploy converts a model" in err and len(err.strip().splitlines()) == 1
