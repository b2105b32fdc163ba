"""Per-task metrics: per-class P/R/F1, confusion, ROC AUC with ties, per-output errors,
agreement-only without labels, and --task/--class-names kept in the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import converter_in_process

from deploykit.errors import BadInput
from deploykit.model import manifest_schema, metrics


def test_per_class_and_confusion_match_hand_computed():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    assert metrics.confusion(true, pred, 3) == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    rows = metrics.per_class(true, pred, 3)
    # class 0: P 2/2, R 2/3; class 1: P 1/2, R 1/2; class 2: P 1/2, R 1/1
    assert [r["precision"] for r in rows] == pytest.approx([1.0, 0.5, 0.5])
    assert [r["recall"] for r in rows] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [r["f1"] for r in rows] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [r["support"] for r in rows] == [3, 2, 1]


def test_classification_report_lists_samples_that_differ():
    y = np.array([0, 1, 1])
    f = np.eye(2)[[0, 1, 1]]
    q = np.eye(2)[[0, 0, 1]]
    r = metrics.classification_report(y, f, q)
    assert r["differs_from_float"] == [1]
    assert r["per_class_quantized"][1]["recall"] == pytest.approx(0.5)


def test_roc_auc_with_ties_matches_pair_count():
    scores = [0.1, 0.4, 0.4, 0.8, 0.4]
    y = [0, 0, 1, 1, 1]
    # positives 0.4, 0.8, 0.4 against negatives 0.1, 0.4: pairs won 1+0.5, 1+1, 1+0.5 = 5 of 6
    assert metrics.roc_auc(scores, y) == pytest.approx(5 / 6)
    assert metrics.roc_auc([1, 1, 1], [0, 1, 1]) == pytest.approx(0.5)
    assert metrics.roc_auc([3, 2, 1], [1, 0, 0]) == pytest.approx(1.0)
    assert metrics.roc_auc([1, 2], [0, 0]) is None


def test_anomaly_report_scores_reconstruction_error():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    recon = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])     # errors 0, 0.5, 2
    r = metrics.anomaly_report(np.array([0, 1, 1]), x, recon, recon)
    assert r["quantized_scores"] == pytest.approx([0.0, 0.5, 2.0])
    assert r["float_auc"] == r["quantized_auc"] == pytest.approx(1.0)


def test_per_output_errors():
    rows = metrics.per_output_errors(np.array([[1.0, 0.0], [3.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 2.0]]))
    assert rows[0] == {"output": 0, "mae": 2.0, "rmse": pytest.approx(np.sqrt(5)), "max_abs": 3.0}
    assert rows[1]["max_abs"] == 2.0 and rows[1]["mae"] == 1.0


def test_no_labels_says_agreement_only():
    r = metrics.compare("none", None, np.eye(3), np.eye(3))
    assert "agreement only" in r["note"] and r["top1_agreement"] == 1.0
    assert r["task"] == "none" and not any("accuracy" in k or "target" in k for k in r)


def test_class_names_count_mismatch_names_both_counts(tmp_path):
    with pytest.raises(BadInput, match="2 class name.*3 classes"):
        metrics.check_class_names(["a", "b"], 3)
    f = tmp_path / "labels.txt"
    f.write_text("up\ndown\n\nleft\n")
    assert metrics.parse_class_names(str(f)) == ["up", "down", "left"]
    assert metrics.parse_class_names("a, b") == ["a", "b"]


def test_schema_accepts_new_tasks_and_checks_class_names():
    with pytest.raises(manifest_schema.Invalid, match="class_names"):
        manifest_schema._class_names(["a", 3])
    assert "anomaly" in manifest_schema.TASKS and "none" in manifest_schema.TASKS


def test_cli_keeps_task_and_class_names(example_files, tmp_path, capsys):
    from deploykit.cli import main
    g = example_files["gestures"]
    classes = int(np.load(g["test_data"])["y"].max()) + 1
    names = ",".join(f"c{i}" for i in range(classes))
    out = tmp_path / "g"
    with converter_in_process(), pytest.raises(SystemExit) as exc:
        main(["convert", str(g["model"]), "-o", str(out), "--rep-data", str(g["rep_data"]),
              "--test-data", str(g["test_data"]), "--task", "classification", "--class-names", names])
    assert exc.value.code == 0, capsys.readouterr()
    m = json.loads((out / "manifest.json").read_text())
    assert m["task"] == "classification" and m["class_names"] == names.split(",")
    assert len(m["report"]["per_class_quantized"]) == classes
    capsys.readouterr()
    with converter_in_process(), pytest.raises(SystemExit) as exc:
        main(["convert", str(g["model"]), "-o", str(tmp_path / "b"), "--rep-data", str(g["rep_data"]),
              "--class-names", "a,b"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"2 class name(s) but the model has {classes} classes" in err
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_device_rows_fold_per_class_differs_and_per_output():
    from deploykit.report.aggregate import RowAggregator
    spec = {"dtype": "float32", "shape": [1, 3], "scale": 0.0, "zero_point": 0}
    desktop = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    device = np.eye(3, dtype=np.float32)[[0, 2, 2, 1]]
    agg = RowAggregator(spec, {"desktop": desktop}, np.array([0, 1, 2, 2]), "classification")
    for i, row in enumerate(device):
        agg.add({"index": i, "outputs": [row.tolist()]})
    dev = agg.finish()["accuracy"]["device"]
    assert dev["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert [r["recall"] for r in dev["per_class"]] == pytest.approx([1.0, 0.0, 0.5])
    assert [d["index"] for d in dev["differs_from_desktop"]] == [1, 3]
    assert dev["differs_from_desktop"][0] == {"index": 1, "desktop": 1, "this": 2, "label": 1}

    spec2 = {"dtype": "float32", "shape": [1, 2], "scale": 0.0, "zero_point": 0}
    agg = RowAggregator(spec2, {}, np.array([[0.0, 0.0], [0.0, 2.0]]), "regression")
    agg.add({"index": 0, "outputs": [[1.0, 0.0]]})
    agg.add({"index": 1, "outputs": [[3.0, 0.0]]})
    per = agg.finish()["accuracy"]["device"]["per_output"]
    assert per[0]["mae"] == 2.0 and per[0]["max_error"] == 3.0 and per[1]["rmse"] == pytest.approx(np.sqrt(2))


@pytest.mark.slow
def test_anomaly_task_on_a_tiny_autoencoder_gives_auc(tmp_path):
    """--task anomaly: reconstruction error per sample and ROC AUC, float and quantized."""
    import tensorflow as tf

    from deploykit.model.convert import convert
    rng = np.random.default_rng(0)
    normal = np.repeat(rng.random((200, 1)), 8, axis=1).astype(np.float32)   # all features equal
    anomalous = rng.random((40, 8)).astype(np.float32)                        # independent features
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(1), tf.keras.layers.Dense(8)])
    model.compile("adam", "mse")
    model.fit(normal, normal, epochs=60, verbose=0)
    model.save(tmp_path / "ae.keras")
    x = np.concatenate([normal[:40], anomalous])
    np.savez(tmp_path / "test.npz", x=x, y=np.r_[np.zeros(40), np.ones(40)].astype(np.int64))
    np.savez(tmp_path / "rep.npz", x=normal)
    m = convert(tmp_path / "ae.keras", tmp_path / "out", quantize="int8", rep_data=tmp_path / "rep.npz",
                test_data=tmp_path / "test.npz", task="anomaly").data
    r = m["report"]
    assert m["task"] == "anomaly" and len(r["quantized_scores"]) == 80
    assert r["float_auc"] > 0.9 and r["quantized_auc"] > 0.9


def test_report_json_shows_task_class_names_and_agreement_only():
    from deploykit.harness.inputs import RunInputs
    from deploykit.report.build import build_report
    from tests.test_report import HELLO, FakeManifest, references, synthetic_rows
    n = 50
    for task, names, y in (("classification", ["a"], None), ("regression", None, np.zeros((n, 1), np.float32))):
        manifest = FakeManifest()
        manifest.data = {"task": task, "class_names": names}
        inputs = RunInputs(x=np.zeros((n, 1), np.float32), x_model=np.zeros((n, 1), np.int8), y=y,
                           path="t.npz", sha256="cd" * 32)
        report = build_report(manifest=manifest, inputs=inputs, rows=list(synthetic_rows(n)), refs=references(n),
                              hello=HELLO, faults={}, throughput={}, estimate=None)
        assert report["task"] == task and report["class_names"] == names
        assert ("agreement only" in (report["accuracy_note"] or "")) == (y is None)
