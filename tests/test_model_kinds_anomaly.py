"""Anomaly detection end to end (issue 11): an autoencoder whose reconstruction error is the
score (label 1 = anomalous) runs on the virtual board through `hil run`, and the report
gives ROC AUC for the float model, the desktop (LiteRT) and the device, the device's from
a second pass over results.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from deploykit.report.aggregate import anomaly_figures


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    """Normal samples have all 8 features equal; anomalous ones are independent: a 1-unit
    bottleneck reconstructs the first and not the second (AUC near 1 on float)."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    tf = tf_backend.tf()
    root = tmp_path_factory.mktemp("ae")
    rng = np.random.default_rng(0)
    normal = np.repeat(rng.random((200, 1)), 8, axis=1).astype(np.float32)
    anomalous = rng.random((40, 8)).astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(1), tf.keras.layers.Dense(8)])
    model.compile("adam", "mse")
    model.fit(normal, normal, epochs=60, verbose=0)
    model.save(root / "ae.keras")
    np.savez(root / "test.npz", x=np.concatenate([normal[:40], anomalous]),
             y=np.r_[np.zeros(40), np.ones(40)].astype(np.int64))
    np.savez(root / "rep.npz", x=normal)
    return convert(root / "ae.keras", root / "out", name="ae", rep_data=root / "rep.npz",
                   test_data=root / "test.npz", task="anomaly")


@pytest.mark.slow  # trains the autoencoder: ~10 s with TensorFlow's import
def test_autoencoder_auc_on_float_desktop_and_device(autoencoder, tmp_path, capsys):
    """Before: the report had no figure for an anomaly task at all ("agreement only")."""
    out = tmp_path / "r"
    code, _, err = run_cli(["hil", "run", "--manifest", autoencoder.path, "--port",
                            f"virtual://{autoencoder.path}?pacing=0", "-o", out, "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    acc, conv = report["accuracy"], autoencoder["report"]
    assert acc["task"] == "anomaly" and report["accuracy_note"] is None
    assert acc["float"]["auc"] == pytest.approx(conv["float_auc"]) and acc["float"]["auc"] > 0.9
    # the device equals TFLM on the host exactly, so its AUC is the converter's TFLM-host figure
    assert acc["device"]["auc"] == pytest.approx(conv["quantized_auc"]) and acc["device"]["auc"] > 0.9
    assert acc["desktop"]["auc"] > 0.9 and acc["device"]["samples"] == 80
    assert acc["device"]["mean_score_anomalous"] > acc["device"]["mean_score_normal"]
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "Accuracy against labels (anomaly)" in text and "auc" in text
        assert f"{acc['device']['auc']:.4g}" in text


class OnceRows:
    """results.jsonl as harness.results.Rows gives it: iterable again and again, read row by row."""

    def __init__(self, rows):
        self._rows, self.passes = rows, 0

    def __iter__(self):
        self.passes += 1
        yield from self._rows


def test_score_model_auc_from_a_second_pass_skips_failed_rows():
    """A model that outputs its own score (one int8 element): AUC of the dequantized scores,
    only over the samples the device ran, with tied scores counted half."""
    spec_in = {"dtype": "float32", "shape": [1, 2], "scale": 0.0, "zero_point": 0}
    spec_out = {"dtype": "int8", "shape": [1, 1], "scale": 0.5, "zero_point": -10}
    device = [[-10], [-6], [-2], [-6], [20]]          # scores 0, 2, 4, 2, (15: its row failed)
    y = np.array([0, 0, 1, 1, 1])
    rows = OnceRows([{"index": i, "outputs": [device[i]]} for i in range(4)] + [{"index": 4, "error": "timeout"}])
    desktop = np.array(device, np.int8)
    figures = anomaly_figures(rows, 4, spec_in, spec_out, np.zeros((5, 2), np.float32), y,
                              {"desktop": desktop, "float": None})
    # positives 4, 2 against negatives 0, 2: pairs won 1 + 1 + 1 + 0.5 of 4
    assert figures["device"]["auc"] == pytest.approx(3.5 / 4) and figures["device"]["samples"] == 4
    assert figures["desktop"] == figures["device"] and figures["float"] is None
    assert figures["device"]["mean_score_normal"] == pytest.approx(1.0)
    assert rows.passes == 1
