"""Models with several inputs and several outputs, end to end (issue 11): convert (from Keras)
or take as is (.tflite) -> inspect -> render -> virtual board -> `hil run` -> report.

The test model: a seeded Keras functional model with a 4-element vector and a 3x3 patch in,
a softmax classifier (3 classes) and a regression head out, trained for a few epochs. Data
for several inputs is an .npz with x0, x1 (input order) or the inputs' names, plus y for the
labels of the first output. Before this change convert said "deploykit converts
single-input models" and the harness "streams single-input models only".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import error_lines, run_cli

from deploykit.errors import BadInput
from deploykit.harness.inputs import RunInputs
from deploykit.model.datafiles import Dataset, input_arrays, load_data
from deploykit.report.aggregate import RowAggregator

N_TRAIN, N_TEST = 600, 60
VEC, PATCH = [1, 4], [1, 3, 3, 1]


def _data(seed: int = 0):
    """Inputs, class labels (from both inputs) and a regression target (from both inputs)."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    vec = rng.normal(size=(n, 4)).astype(np.float32)
    patch = rng.normal(size=(n, 3, 3, 1)).astype(np.float32)
    score = np.stack([vec[:, 0] + vec[:, 1], 3 * patch.mean(axis=(1, 2, 3)), vec[:, 2] - vec[:, 3]], 1)
    return vec, patch, score.argmax(1).astype(np.int64), (0.5 * vec.sum(1) + patch[:, 1, 1, 0])[:, None]


def _keras_model(root: Path, vec, patch, y, target) -> Path:
    from deploykit.model import tf_backend
    k = tf_backend.keras()
    k.utils.set_random_seed(0)
    a, b = k.Input((4,), name="vec"), k.Input((3, 3, 1), name="patch")
    p = k.layers.Flatten()(k.layers.Conv2D(4, 2, activation="relu")(b))
    h = k.layers.Dense(16, activation="relu")(k.layers.Concatenate()([k.layers.Dense(8, activation="relu")(a), p]))
    model = k.Model([a, b], [k.layers.Dense(3, activation="softmax", name="cls")(h), k.layers.Dense(1, name="reg")(h)])
    model.compile(k.optimizers.Adam(0.01), ["sparse_categorical_crossentropy", "mse"])
    model.fit([vec[:N_TRAIN], patch[:N_TRAIN]], [y[:N_TRAIN], target[:N_TRAIN]], epochs=12, batch_size=32, verbose=0)
    model.save(root / "two.keras")
    return root / "two.keras"


def _as_is_tflite(path: Path, vec, patch) -> Path:
    """TensorFlow's standard int8 recipe, as a user would run it elsewhere: inputs and outputs
    come out in the converter's order ([patch, vec], [reg, cls]), dense layers per channel."""
    from deploykit.model import tf_backend
    tf = tf_backend.tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(tf_backend.load_keras(path))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ({"vec": vec[i:i + 1], "patch": patch[i:i + 1]} for i in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with tf_backend._quiet():
        out = path.parent / "asis.tflite"
        out.write_bytes(conv.convert())
    return out


@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    """The Keras model converted by `deploykit convert`, and the as-is .tflite taken through
    `convert --fc-per-tensor` (its per-channel dense weights are refused on every board)."""
    root = tmp_path_factory.mktemp("two_io")
    vec, patch, y, target = _data()
    keras_path = _keras_model(root, vec, patch, y, target)
    t = slice(N_TRAIN, None)
    np.savez(root / "rep.npz", x0=vec[:200], x1=patch[:200])
    np.savez(root / "test_x.npz", x0=vec[t], x1=patch[t], y=y[t])
    np.savez(root / "test_names.npz", patch=patch[t], vec=vec[t], y=y[t])
    assert run_cli(["convert", keras_path, "--rep-data", root / "rep.npz", "--test-data", root / "test_x.npz",
                    "-o", root / "keras_out"]) == 0
    asis = _as_is_tflite(keras_path, vec, patch)
    np.savez(root / "asis_x.npz", x0=patch[t], x1=vec[t], y=target[t])   # the .tflite's own order
    np.savez(root / "asis_names.npz", **{"serving_default_vec:0": vec[t], "serving_default_patch:0": patch[t]},
             y=target[t])
    assert run_cli(["convert", asis, "--fc-per-tensor", "--test-data", root / "asis_names.npz",
                    "-o", root / "asis_out"]) == 0
    return {"root": root, "keras": root / "keras_out" / "manifest.json", "asis": root / "asis_out" / "manifest.json",
            "vec": vec[t], "patch": patch[t], "y": y[t], "target": target[t]}


def _hil(capsys, manifest: Path, out: Path, data: Path | None = None, board: str = "nano33ble_sense"):
    args = ["hil", "run", "-m", manifest, "-p", f"virtual://{manifest}?pacing=0&board={board}", "-o", out, "--quiet"]
    code, _, err = run_cli(args + (["--data", data] if data else []), capsys)
    return code, err


def _outputs(out: Path) -> dict[int, list]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]
    return {r["index"]: r["outputs"] for r in rows if "outputs" in r}


@pytest.mark.slow
def test_keras_two_in_two_out_convert_inspect_render_hil_run(two_io, tmp_path, capsys):
    """Keras order kept (inputs vec, patch; outputs cls, reg, where TF's converter sorts them
    by name); inspect names each input's .npz keys; render for every board or a refusal with
    both numbers; the virtual board agrees exactly with TFLM-host on both outputs; the task
    figures are output 0's (classification), output 1 gets its own errors against float."""
    m = json.loads(two_io["keras"].read_text())
    assert [t["shape"] for t in m["inputs"]] == [VEC, PATCH]
    assert [t["shape"] for t in m["outputs"]] == [[1, 3], [1, 1]]
    assert m["report"]["task"] == "classification" and len(m["report"]["outputs"]) == 2

    code, stdout, err = run_cli(["inspect", two_io["keras"].parent / "model.tflite", "--test-data",
                                 two_io["root"] / "test_names.npz"], capsys)
    assert code == 0, err
    assert "input 0: 'x0' or 'serving_default_vec:0' or 'vec'" in stdout
    assert "input 1: 'x1' or 'serving_default_patch:0' or 'patch'" in stdout
    assert re.search(r"output 1: 100\.0% identical", stdout)

    from deploykit.firmware.boards import all_boards
    for board in all_boards():
        code, _, err = run_cli(["render", two_io["keras"], "--board", board.id, "-o", tmp_path / board.id], capsys)
        if code == 0:
            assert "g_n_inputs = 2" in (tmp_path / board.id / "src" / "model_data.cpp").read_text()
        else:   # a refusal: one line with the need and the board's budget
            assert code == 2 and len(error_lines(err)) == 1 and len(re.findall(r"\d[\d,]* B", err)) >= 2, err

    code, err = _hil(capsys, two_io["keras"], tmp_path / "r")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["samples"] == N_TEST
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    per = report["outputs"]
    assert [o["output"] for o in per] == [0, 1]
    assert all(o["agreement"]["tflm_host"]["exact_fraction"] == 1.0 for o in per)
    assert per[1]["vs_float"]["device"]["mae"] < 0.1   # the regression head, against the float model
    acc = report["accuracy"]
    assert acc["task"] == "classification"   # y labels output 0 (3 classes), not the 1-element head
    assert acc["device"]["accuracy"] == acc["desktop"]["accuracy"]
    assert abs(acc["device"]["accuracy"] - acc["float"]["accuracy"]) <= 0.05
    assert acc["device"]["accuracy"] > 0.8   # 3 classes: chance is 1/3
    assert "Per output" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.slow
def test_npz_by_names_or_positions_gives_the_same_results(two_io, tmp_path, capsys):
    """x0/x1 in input order and the inputs' names (in another order in the file) are the
    same data: same data hash, same device outputs on both models."""
    for key, a, b in (("keras", "test_x.npz", "test_names.npz"), ("asis", "asis_x.npz", "asis_names.npz")):
        runs = []
        for name in (a, b):
            out = tmp_path / f"{key}_{name}"
            code, err = _hil(capsys, two_io[key], out, two_io["root"] / name, board="virtual")
            assert code == 0, err
            runs.append((json.loads((out / "report.json").read_text()), _outputs(out)))
        (ra, oa), (rb, ob) = runs
        assert ra["data"]["sha256"] == rb["data"]["sha256"] and oa == ob and len(oa) == N_TEST
        assert ra["agreement"]["tflm_host"]["exact_fraction"] == 1.0


@pytest.mark.slow
def test_as_is_tflite_keeps_its_own_order_and_runs(two_io, tmp_path, capsys):
    """A .tflite from TF's own recipe is taken as is: inputs [patch, vec], outputs [reg, cls];
    y labels its first output (the regression head), so the task figures are MAE; the
    classifier is output 1 with its own figures. Its dense layers were re-quantized per
    tensor (--fc-per-tensor), so it renders for every board."""
    m = json.loads(two_io["asis"].read_text())
    assert [t["shape"] for t in m["inputs"]] == [PATCH, VEC]
    assert [t["shape"] for t in m["outputs"]] == [[1, 1], [1, 3]]
    assert run_cli(["render", two_io["asis"], "--board", "nano33ble_sense", "-o", tmp_path / "fw"]) == 0
    code, err = _hil(capsys, two_io["asis"], tmp_path / "r")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert report["accuracy"]["task"] == "regression" and report["accuracy"]["float"] is None  # no Keras source
    device = report["accuracy"]["device"]
    assert device["mae"] < 0.5 * float(np.abs(two_io["target"]).mean())   # better than predicting 0
    assert report["outputs"][1]["agreement"]["tflm_host"]["exact_fraction"] == 1.0


@pytest.mark.slow
def test_converted_model_stores_every_output_for_the_light_install(two_io):
    """TFLM-host outputs stored at convert cover both outputs, found again by both inputs' bytes."""
    from deploykit.model import manifest as manifest_mod
    from deploykit.model.reference import model_inputs, stored_tflm_outputs
    from deploykit.model.tflm_host import TflmRunner
    m = manifest_mod.load(two_io["keras"])
    xs = [model_inputs(two_io["vec"], m["inputs"][0]), model_inputs(two_io["patch"], m["inputs"][1])]
    order = [5, 2, 7]
    stored = stored_tflm_outputs(m, [x[order] for x in xs])
    fresh = TflmRunner(m.model_bytes()).predict_all([x[order] for x in xs])
    assert stored is not None and len(stored) == 2
    assert all(np.array_equal(s, f) for s, f in zip(stored, fresh, strict=True))
    other = xs[1][order].copy()
    other[0, 0, 0, 0] ^= 1   # the patch differs: no stored output for that sample
    assert stored_tflm_outputs(m, [xs[0][order], other]) is None


BAD = {
    "missing x1": (lambda d: {"x0": d["vec"], "y": d["y"]}, "no array for input 1 ('x1'"),
    "wrong shape": (lambda d: {"x0": d["vec"], "x1": d["vec"], "y": d["y"]}, "array 'x1'"),
    "y length": (lambda d: {"x0": d["vec"], "x1": d["patch"], "y": d["y"][:-1]}, "labels in y"),
    "extra array": (lambda d: {"x0": d["vec"], "x1": d["patch"], "x2": d["vec"]}, "array 'x2' is none"),
    "one x": (lambda d: {"x": d["vec"]}, "one array x but the model has 2 inputs"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_npz_for_two_inputs_is_one_line_exit_2(two_io, tmp_path, capsys, case):
    make, words = BAD[case]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **make(two_io))
    code, err = _hil(capsys, two_io["keras"], tmp_path / "r", bad)
    assert code == 2
    assert len(error_lines(err)) == 1 and words in err, err
    assert not (tmp_path / "r" / "results.jsonl").exists()


SPECS = [{"name": "serving_default_vec:0", "shape": VEC}, {"name": "serving_default_patch:0", "shape": PATCH}]


def _dataset(**arrays) -> Dataset:
    first = next(iter(arrays.values()))
    return Dataset(x=first, y=None, path=Path("d.npz"), arrays=arrays)


def test_input_arrays_match_names_aliases_and_positions():
    vec, patch = np.ones((3, 4), np.float32), np.zeros((3, 9), np.float32)
    by_pos = input_arrays(_dataset(x0=vec, x1=patch), SPECS)
    by_alias = input_arrays(_dataset(patch=patch, vec=vec), SPECS, ["vec", "patch"])
    by_name = input_arrays(_dataset(**{"serving_default_patch:0": patch, "serving_default_vec:0": vec}), SPECS)
    for xs in (by_pos, by_alias, by_name):
        assert [x.shape for x in xs] == [(3, 4), (3, 3, 3, 1)] and xs[0].sum() == 12
    with pytest.raises(BadInput, match="gives input 0 twice"):
        input_arrays(_dataset(x0=vec, vec=vec, x1=patch), SPECS, ["vec", "patch"])
    with pytest.raises(BadInput, match=r"unequal sample counts \(x0: 3, x1: 2\)"):
        input_arrays(_dataset(x0=vec, x1=patch[:2]), SPECS)
    with pytest.raises(BadInput, match=r"array 'x1' in d.npz has samples of shape \[4\]"):
        input_arrays(_dataset(x0=vec, x1=vec), SPECS)


def test_load_data_checks_labels_against_every_input(tmp_path):
    np.savez(tmp_path / "d.npz", x0=np.ones((3, 4)), x1=np.ones((2, 9)), y=np.zeros(3))
    with pytest.raises(BadInput, match="2 samples in x1 but 3 labels in y"):
        load_data(tmp_path / "d.npz")


def test_records_put_every_input_back_to_back():
    """A sample's wire record is input 0's bytes, then input 1's (HELLO's tensor order)."""
    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    b = (100 + np.arange(27)).astype(np.int8).reshape(3, 3, 3, 1)
    inputs = RunInputs(x=a, x_model=a, y=None, path=Path("d.npz"), sha256="0", xs=[a, b], xs_model=[a, b])
    records = inputs.records([2, 0])
    assert records.shape == (2, 13)
    assert bytes(records[0]) == a[2].tobytes() + b[2].tobytes()
    assert bytes(records[1]) == a[0].tobytes() + b[0].tobytes()


def test_aggregator_gives_each_output_its_own_figures():
    """Output 1 differs on one of two samples: its agreement is 50 %, output 0's stays 100 %."""
    specs = [{"name": "cls", "dtype": "int8", "shape": [1, 3], "scale": 0.1, "zero_point": 0},
             {"name": "reg", "dtype": "int8", "shape": [1, 1], "scale": 0.5, "zero_point": 0}]
    out0 = np.array([[1, 5, 2], [7, 0, 1]], np.int8)
    out1 = np.array([[4], [6]], np.int8)
    per_output = [{"tflm_host": out0, "desktop": None, "float": out0 * 0.1},
                  {"tflm_host": out1, "desktop": None, "float": np.array([[2.0], [3.5]])}]
    refs = {**per_output[0], "per_output": per_output}
    agg = RowAggregator(specs[0], refs, np.array([1, 0]), "classification", specs)
    agg.add({"index": 0, "outputs": [out0[0].tolist(), [4]]})
    agg.add({"index": 1, "outputs": [out0[1].tolist(), [5]]})
    figures = agg.finish()
    assert figures["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert figures["accuracy"]["device"]["accuracy"] == 1.0
    o0, o1 = figures["outputs"]
    assert o0["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert o1["agreement"]["tflm_host"]["exact_fraction"] == 0.5
    assert o1["vs_float"]["device"]["mae"] == pytest.approx((0.0 + 1.0) / 2)   # 4*0.5=2 vs 2; 5*0.5=2.5 vs 3.5


def test_min_agreement_holds_on_every_output():
    """--min-agreement fails a run whose second output differs from TFLM-host even when the
    first output agrees exactly (before: only output 0 was checked)."""
    from deploykit.report.thresholds import Thresholds, evaluate
    report = {"agreement": {"tflm_host": {"exact_fraction": 1.0}},
              "outputs": [{"output": 0, "agreement": {"tflm_host": {"exact_fraction": 1.0}}},
                          {"output": 1, "agreement": {"tflm_host": {"exact_fraction": 0.5}}}]}
    cases = evaluate(report, Thresholds(min_agreement=1.0))
    assert [c["passed"] for c in cases] == [True, False]
    assert cases[1]["figure"] == "outputs[1].agreement.tflm_host.exact_fraction"


@pytest.mark.slow
def test_named_outputs_keep_the_order_the_model_returns_them(tmp_path):
    """A Keras model returning {"zeta": 2 values, "alpha": 5 values}: the converter sorts its
    outputs by key (alpha first); convert restores the model's order, and the float model's
    outputs line up with the converted ones (each output's error against float is small)."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    k = tf_backend.keras()
    k.utils.set_random_seed(0)
    a = k.Input((4,), name="a")
    h = k.layers.Dense(8, activation="relu")(a)
    k.Model(a, {"zeta": k.layers.Dense(2)(h), "alpha": k.layers.Dense(5)(h)}).save(tmp_path / "d.keras")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    m = convert(tmp_path / "d.keras", tmp_path / "out", rep_data=tmp_path / "d.npz", test_data=tmp_path / "d.npz")
    assert [o["shape"] for o in m["outputs"]] == [[1, 2], [1, 5]]
    assert all(o["quantized_vs_float"]["mae"] < 0.05 for o in m["report"]["outputs"])
