"""Desktop references and their agreement: the library call the harness reuses."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.errors import BadInput
from deploykit.model.reference import agreement, reference_predictions


def test_agreement_quantized_steps():
    a = np.array([[1], [2], [3], [4]], np.int8)
    b = np.array([[1], [3], [3], [1]], np.int8)
    r = agreement(a, b, 0.5, 0)
    assert r["exact_fraction"] == 0.5 and r["max_abs_steps"] == 3 and r["mean_abs_steps"] == 1.0
    assert r["mae"] == pytest.approx(0.5) and r["rmse"] == pytest.approx(np.sqrt((0.25 + 2.25) / 4))


def test_agreement_float_outputs_have_no_steps():
    r = agreement(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), 0.0, 0)
    assert r["max_abs_steps"] is None and r["exact_fraction"] == 1.0 and r["cosine"] == pytest.approx(1.0)


def test_agreement_refuses_mismatched_shapes():
    with pytest.raises(BadInput, match="shapes"):
        agreement(np.zeros((2, 1)), np.zeros((3, 1)), 1.0, 0)


def test_sine_all_256_int8_inputs(sine_manifest):
    """TFLM-host and LiteRT differ by at most one step; the float model is close."""
    x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    refs = reference_predictions(sine_manifest, x)
    out = sine_manifest["outputs"][0]
    a = agreement(refs["tflm_host"], refs["desktop"], out["scale"], out["zero_point"])
    assert a["max_abs_steps"] <= 1 and a["exact_fraction"] > 0.9
    assert refs["float"].shape == (256, 1)
    deq = (refs["tflm_host"].astype(np.float32) - out["zero_point"]) * out["scale"]
    assert np.abs(deq - refs["float"]).mean() < 0.3


def test_float_inputs_are_quantized_for_the_int8_model(converted_examples):
    m = converted_examples["gestures"]
    x = np.load(m.source_path("test_data"))["x"][:10]
    refs = reference_predictions(m, x)
    assert refs["tflm_host"].dtype == np.int8 and refs["float"].shape == (10, 4)
    assert (refs["tflm_host"].argmax(1) == refs["float"].argmax(1)).mean() >= 0.9
