"""`deploykit convert` end to end: real TF conversion, manifest contents, every mode and format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.cli import main
from deploykit.model import manifest as manifest_mod
from deploykit.model.convert import convert


def test_manifest_contract(converted_examples):
    for name, m in converted_examples.items():
        d = m.data
        assert d["schema"] == manifest_mod.SCHEMA and d["name"] == name and d["quantization"] == "int8"
        assert manifest_mod.load(m.path).sha256 == manifest_mod.sha256_file(m.model_path)
        assert d["model_bytes"] == m.model_path.stat().st_size
        assert all(t["dtype"] == "int8" and t["scale"] > 0 for t in d["inputs"] + d["outputs"])
        assert d["macs_total"] == sum(o["macs"] for o in d["ops"]) > 0
        assert set(d["arena"]["projections"]) >= {"cortex-m-reference", "cortex-m-cmsis-nn", "esp32-esp-nn"}
        for key in ("model", "rep_data", "test_data"):
            assert m.source_path(key).exists()
        # LiteRT's optimized kernels round differently from TFLM's reference ones, by a few steps at most.
        assert d["report"]["tflm_host_vs_litert"]["mean_abs_steps"] < 0.5
    assert converted_examples["sine"]["report"]["tflm_host_vs_litert"]["max_abs_steps"] <= 1


def test_batch_is_fixed_to_one(converted_examples):
    """No SHAPE/STRIDED_SLICE/PACK from a dynamic batch: the Flatten stays a RESHAPE."""
    m = converted_examples["gestures"]
    ops = {o["op"] for o in m["ops"]}
    assert not ops & {"SHAPE", "STRIDED_SLICE", "PACK"} and "RESHAPE" in ops
    assert m["inputs"][0]["shape"] == [1, 32, 3]


def test_regression_and_classification_reports(converted_examples):
    sine = converted_examples["sine"]["report"]
    assert sine["task"] == "regression"
    for key in ("float_vs_target", "quantized_vs_target", "quantized_vs_float"):
        assert set(sine[key]) == {"mae", "rmse", "max_abs"}
    assert sine["size"]["tflite_bytes"] < sine["size"]["source_bytes"]
    g = converted_examples["gestures"]["report"]
    conf = np.array(g["confusion_quantized"])
    assert conf.shape == (4, 4) and conf.sum() == g["samples"]
    assert np.trace(conf) / conf.sum() == pytest.approx(g["quantized_accuracy"])


@pytest.mark.parametrize("mode, in_dtype", [("int8-float-io", "float32"), ("float32", "float32")])
@pytest.mark.slow
def test_other_modes(tmp_path, example_files, mode, in_dtype):
    f = example_files["sine"]
    m = convert(f["model"], tmp_path / mode, quantize=mode, rep_data=f["rep_data"], test_data=f["test_data"])
    assert m["quantization"] == mode and m["inputs"][0]["dtype"] == in_dtype
    assert m["report"]["quantized_vs_float"]["mae"] < (1e-4 if mode == "float32" else 0.3)
    from deploykit.commands.inspect import format_report
    from deploykit.model.inspect import inspect_model
    text = "\n".join(format_report(inspect_model(m.model_path, f["test_data"])))
    assert "TFLM-host vs LiteRT on 1000 inputs" in text and "None" not in text


def test_tflite_taken_as_is(tmp_path, sine_manifest):
    m = convert(sine_manifest.model_path, tmp_path / "again", test_data=sine_manifest.source_path("test_data"))
    assert m.model_bytes() == sine_manifest.model_bytes()
    assert m["source"]["model_format"] == "tflite" and "float_vs_target" not in m["report"]
    assert m["report"]["quantized_vs_target"] == sine_manifest["report"]["quantized_vs_target"]


@pytest.mark.slow
def test_saved_model_and_h5(tmp_path, example_files):
    from deploykit.model import tf_backend
    keras = tf_backend.keras()
    model = keras.models.load_model(example_files["linear"]["model"])
    model.export(str(tmp_path / "saved"), verbose=False)
    model.save(tmp_path / "linear.h5")
    data = example_files["linear"]["test_data"]
    for src in (tmp_path / "saved", tmp_path / "linear.h5"):
        m = convert(src, tmp_path / f"out_{src.suffix or 'sm'}", test_data=data)
        assert m["ops"] == [{"op": "FULLY_CONNECTED", "count": 1, "macs": 1}]
        assert m["report"]["float_vs_target"]["max_abs"] < 0.5


@pytest.mark.slow
def test_csv_data_and_cli_summary(tmp_path, example_files, capsys):
    test = np.load(example_files["linear"]["test_data"])
    csv = tmp_path / "linear.csv"
    csv.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in zip(test["x"][:, 0], test["y"][:, 0], strict=True)))
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(example_files["linear"]["model"]), "-o", str(tmp_path / "o"),
              "--test-data", str(csv), "--label-column", "1", "--name", "lin"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "model.tflite" in out and "FULLY_CONNECTED" in out and "projected" in out
    d = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert d["name"] == "lin" and d["report"]["samples"] == 51 and d["source"]["label_column"] == 1


def test_cli_summary_of_a_classifier(converted_examples):
    from deploykit.commands.convert import summary
    m = converted_examples["gestures"]
    line = summary(m.data, m.directory)[-1]
    r = m["report"]
    assert line.startswith(f"accuracy on {r['samples']} test samples: converted (int8) {r['quantized_accuracy']:.3f}")
    assert f"float {r['float_accuracy']:.3f}" in line and "nan" not in line
    taken_as_is = dict(m.data, report={k: v for k, v in r.items() if not k.startswith(("float", "top1"))})
    assert "float" not in summary(taken_as_is, m.directory)[-1]
