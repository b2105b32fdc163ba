"""Per-channel FULLY_CONNECTED from TF's standard recipe: inspect flags it per board, render
refuses it naming the way through, and `convert --fc-per-tensor` re-quantizes it per tensor
into a model every board renders, TFLM runs, with accuracy before and after in the report.

The model is a small seeded Keras classifier converted exactly as a user outside deploykit
would (Optimize.DEFAULT + representative data + int8 io, TF's per-channel dense default).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest

from deploykit.firmware.boards import all_boards
from deploykit.model import requantize, tflite_model

# Measured on this model (seed 0, TF 2.21, tflite-micro 0.dev20261023182759): per-channel
# 0.890, per-tensor 0.885 on 200 test samples, outputs within 1 step of each other.
ACCURACY_DROP_BOUND = 0.02


def run_cli(capsys, *args):
    from deploykit.cli import main
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, [line for line in out.err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def per_channel(tmp_path_factory) -> dict:
    """{tflite, test, test_unlabelled, keras}: a 8->16->3 classifier and its standard-recipe .tflite."""
    from deploykit.model import tf_backend
    tf = tf_backend.tf()
    root = tmp_path_factory.mktemp("per_channel")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(8, 3)) + 0.3 * rng.normal(size=(600, 3)), axis=1)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(3)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:400], y[:400], epochs=30, verbose=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(100))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    files = {"tflite": root / "standard.tflite", "test": root / "test.npz",
             "test_unlabelled": root / "unlabelled.npz", "keras": root / "model.keras"}
    files["tflite"].write_bytes(bytes(converter.convert()))
    np.savez(files["test"], x=x[400:], y=y[400:])
    np.savez(files["test_unlabelled"], x=x[400:])
    model.save(files["keras"])
    return files


@pytest.fixture(scope="module")
def requantized(per_channel, tmp_path_factory):
    """`deploykit convert standard.tflite --fc-per-tensor --test-data test.npz`: (outdir, stdout)."""
    out = tmp_path_factory.mktemp("requantized") / "out"
    capsys_free = _run_plain("convert", per_channel["tflite"], "-o", out, "--fc-per-tensor",
                             "--test-data", per_channel["test"])
    return out, capsys_free


def _run_plain(*args) -> str:
    """The CLI in-process, its stdout captured without pytest's capsys (module fixtures)."""
    import contextlib
    import io

    from deploykit.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 0, buf.getvalue()
    return buf.getvalue()


def _fc_weights(model: bytes) -> list[tflite_model.Tensor]:
    parsed = tflite_model.parse(model)
    return [parsed.tensors[o.inputs[1]] for o in parsed.operators if o.op == "FULLY_CONNECTED"]


def test_standard_recipe_gives_per_channel_fc(per_channel):
    """The premise: TF's default int8 recipe gives FC weights several scales."""
    weights = _fc_weights(per_channel["tflite"].read_bytes())
    assert [len(w.scales) for w in weights] == [16, 3]
    assert [f["channels"] for f in requantize.per_channel_fc(per_channel["tflite"].read_bytes())] == [16, 3]


def test_inspect_flags_it_per_board_with_the_way_through(per_channel, capsys):
    code, out, err = run_cli(capsys, "inspect", per_channel["tflite"], "--json")
    assert code == 0, err
    p = json.loads(out)["per_channel_fc"]
    assert [w["channels"] for w in p["weights"]] == [16, 3]
    one_scale = sorted(b.id for b in all_boards() if not b.tflm_per_channel_fc)
    assert p["boards_refused"] == one_scale and "teensy41" in one_scale
    assert sorted(p["boards_ok"] + p["boards_refused"]) == sorted(b.id for b in all_boards())
    assert "--fc-per-tensor" in p["way_through"]
    code, out, err = run_cli(capsys, "inspect", per_channel["tflite"])
    assert code == 0, err
    assert "per-channel FULLY_CONNECTED weights" in out and "esp32dev" in out and "--fc-per-tensor" in out


def test_inspect_names_a_board_whose_port_runs_per_channel_fc(per_channel):
    """A board with a per-channel-capable port (flag true) is listed as able to run it."""
    from dataclasses import replace

    from deploykit.model.inspect import per_channel_fc
    boards = all_boards()
    capable = replace(boards[0], tflm_per_channel_fc=True)
    p = per_channel_fc(per_channel["tflite"].read_bytes(), per_channel["tflite"], [capable, *boards[1:]])
    assert p["boards_ok"] == [capable.id] and capable.id not in p["boards_refused"]


def test_render_refuses_it_naming_fc_per_tensor(per_channel, tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", per_channel["tflite"], "-o", tmp_path / "asis")
    assert code == 0, err
    code, out, err = run_cli(capsys, "render", tmp_path / "asis", "--board", "teensy41", "-o", tmp_path / "fw")
    assert code == 2 and len(err) == 1, err
    assert "per-channel" in err[0] and "teensy41" in err[0] and "--fc-per-tensor" in err[0]
    assert not (tmp_path / "fw").exists()


def test_fc_per_tensor_gives_one_scale_and_renders_for_every_board(per_channel, requantized):
    from deploykit.firmware import render
    out, _ = requantized
    model = (out / "model.tflite").read_bytes()
    assert [len(w.scales) for w in _fc_weights(model)] == [1, 1]
    assert requantize.per_channel_fc(model) == []
    for board in all_boards():
        render.plan(out / "manifest.json", board.id)  # raises BadInput on a refusal


def test_fc_per_tensor_runs_on_tflm_host_close_to_before(per_channel, requantized):
    from deploykit.model.quantization import to_input_dtype
    from deploykit.model.tflm_host import TflmRunner
    out, stdout = requantized
    manifest = json.loads((out / "manifest.json").read_text())
    m = manifest["report"]["fc_per_tensor"]
    assert m["task"] == "classification" and m["samples"] == 200
    assert m["before"]["accuracy"] > 0.8, "the per-channel model itself must be a real classifier"
    assert abs(m["after"]["accuracy"] - m["before"]["accuracy"]) <= ACCURACY_DROP_BOUND
    assert m["after_vs_before"]["max_abs_steps"] <= 2
    data = np.load(per_channel["test"])
    x = to_input_dtype(data["x"], manifest["inputs"][0])
    pred = TflmRunner((out / "model.tflite").read_bytes()).predict(x).argmax(1)
    assert (pred == data["y"]).mean() == pytest.approx(m["after"]["accuracy"])
    assert [c["channels"] for c in manifest["source"]["fc_per_tensor"]["requantized"]] == [16, 3]
    line = next(s for s in stdout.splitlines() if s.startswith("--fc-per-tensor"))
    assert f"before accuracy {m['before']['accuracy']:.3f}" in line
    assert f"after accuracy {m['after']['accuracy']:.3f}" in line


def test_fc_per_tensor_changes_only_fc_weights_bias_and_their_scales(per_channel):
    """Same size, every other buffer byte-identical; the weights and bias keep their float
    values within half a new quantization step."""
    before = per_channel["tflite"].read_bytes()
    after, changed = requantize.fc_per_tensor(before)
    assert len(after) == len(before) and after != before
    b, a = tflite_model.parse(before), tflite_model.parse(after)
    fc_inputs = {i for o in b.operators if o.op == "FULLY_CONNECTED" for i in o.inputs[1:3]}
    for i, (tb, ta) in enumerate(zip(b.tensors, a.tensors, strict=False)):
        if i not in fc_inputs:
            assert (ta.scales, ta.zero_points) == (tb.scales, tb.zero_points)
            assert np.array_equal(_data(after, i), _data(before, i))
            continue
        old = _data(before, i).astype(np.float64).reshape(len(tb.scales), -1) * np.reshape(tb.scales, (-1, 1))
        new = _data(after, i).astype(np.float64).reshape(len(tb.scales), -1) * ta.scales[0]
        assert len(ta.scales) == 1 and np.abs(new - old).max() <= ta.scales[0] / 2 + 1e-9
    assert changed[0]["new_scale"] == pytest.approx(max(_fc_weights(before)[0].scales), rel=1e-6)


def _data(model: bytes, tensor: int) -> np.ndarray:
    s = tflite_model._schema()
    root = s.Model.GetRootAsModel(model, 0)
    t = root.Subgraphs(0).Tensors(tensor)
    dtype = {"int8": np.int8, "int32": np.int32}.get(tflite_model.parse(model).tensors[tensor].dtype, np.uint8)
    buf = root.Buffers(t.Buffer())
    return buf.DataAsNumpy().view(dtype) if buf.DataLength() else np.zeros(0, dtype)


def test_without_labels_it_reports_agreement_only(per_channel, tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", per_channel["tflite"], "-o", tmp_path / "o", "--fc-per-tensor",
                             "--test-data", per_channel["test_unlabelled"])
    assert code == 0, err
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())["report"]["fc_per_tensor"]
    assert m["task"] is None and "before" not in m and m["after_vs_before"]["samples"] == 200
    assert re.search(r"agreement only.*identical to the per-channel model's on \d+\.\d%", out)


def test_fc_per_tensor_on_a_per_tensor_model_is_a_one_line_no_op(requantized, tmp_path, capsys):
    given = requantized[0] / "model.tflite"  # per tensor already
    code, out, err = run_cli(capsys, "convert", given, "-o", tmp_path / "o", "--fc-per-tensor")
    assert code == 0, err
    said = [line for line in out.splitlines() if "--fc-per-tensor" in line]
    assert len(said) == 1 and "no per-channel FULLY_CONNECTED" in said[0] and "nothing changed" in said[0]
    assert (tmp_path / "o" / "model.tflite").read_bytes() == given.read_bytes()


def test_fc_per_tensor_on_a_keras_model_is_refused(per_channel, tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", per_channel["keras"], "-o", tmp_path / "o", "--fc-per-tensor")
    assert code == 2 and out == "" and len(err) == 1, err
    assert "--fc-per-tensor" in err[0] and "per tensor" in err[0]
    assert not (tmp_path / "o").exists()


def test_host_reference_is_pinned_and_recorded(requantized):
    """The manifest names the host TFLM wheel, and pyproject pins exactly that wheel."""
    out, _ = requantized
    installed = importlib.metadata.version("tflite-micro")
    assert json.loads((out / "manifest.json").read_text())["host_reference"]["tflite_micro"] == installed
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"tflite-micro=={installed};' in pyproject  # pinned, with its platform marker
