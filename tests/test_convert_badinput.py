"""Every bad input `deploykit convert` lists: one clear line, exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import error_lines, run_cli


def assert_refused(args, capsys, outdir, *words):
    code, _, err = run_cli(args, capsys)
    lines = error_lines(err)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("deploykit: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    assert not outdir.exists() or not any(outdir.iterdir()), list(outdir.iterdir())


def test_missing_model(tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused(["convert", str(tmp_path / "nope.keras"), "-o", str(out)], capsys, out, "does not exist")


def test_file_that_is_not_a_model(tmp_path, capsys):
    out = tmp_path / "out"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert_refused(["convert", str(text), "-o", str(out)], capsys, out, "not a model")
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"this is not a zip archive")
    assert_refused(["convert", str(fake), "-o", str(out)], capsys, out, "Keras model")


def test_truncated_tflite(tmp_path, capsys, sine_manifest):
    out = tmp_path / "out"
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(sine_manifest.model_bytes()[:1500])
    assert_refused(["convert", str(bad), "-o", str(out)], capsys, out, "truncated or corrupted")


def test_not_a_flatbuffer(tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "text.tflite"
    bad.write_bytes(b"definitely not a flatbuffer model file")
    assert_refused(["convert", str(bad), "-o", str(out)], capsys, out, "TFL3")


@pytest.mark.parametrize("x, words", [
    (np.zeros((10, 7), np.float32), ("[7]", "[1]")),
    (np.array([[0.5], [np.nan], [1.0]], np.float32), ("NaN or infinite",)),
    (np.array([[0.5], [np.inf]], np.float32), ("NaN or infinite",)),
    (np.zeros((0, 1), np.float32), ("empty",)),
])
def test_bad_data(tmp_path, capsys, example_files, x, words):
    out = tmp_path / "out"
    data = tmp_path / "data.npz"
    np.savez(data, x=x)
    assert_refused(["convert", str(example_files["sine"]["model"]), "-o", str(out), "--rep-data", str(data)],
                   capsys, out, *words)


def test_int8_without_any_data(tmp_path, capsys, example_files):
    out = tmp_path / "out"
    assert_refused(["convert", str(example_files["sine"]["model"]), "-o", str(out)], capsys, out, "--rep-data")


@pytest.mark.parametrize("mode, word", [("dynamic", "hybrid"), ("float16", "fp16"), ("int4", "not a mode")])
def test_refused_modes(tmp_path, capsys, example_files, mode, word):
    out = tmp_path / "out"
    assert_refused(["convert", str(example_files["sine"]["model"]), "-o", str(out), "--quantize", mode],
                   capsys, out, word)


def test_output_directory_under_a_file(tmp_path, capsys, example_files):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    files = example_files["sine"]
    code, _, err = run_cli(["convert", str(files["model"]), "-o", str(blocker / "out"),
                           "--rep-data", str(files["rep_data"])], capsys)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "is a file" in lines[0], lines
    assert blocker.read_text() == "a file where a directory should be"


def test_output_directory_read_only(tmp_path, capsys, example_files):
    import os
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere; covered by test_output_directory_under_a_file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    files = example_files["sine"]
    code, _, err = run_cli(["convert", str(files["model"]), "-o", str(ro / "out"),
                           "--rep-data", str(files["rep_data"])], capsys)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "cannot be written" in lines[0]
    assert not any(ro.iterdir())


@pytest.mark.slow
def test_op_tflm_lacks(tmp_path, capsys, atan2_saved_model):
    out = tmp_path / "out"
    assert_refused(["convert", str(atan2_saved_model), "-o", str(out), "--quantize", "float32"],
                   capsys, out, "ATAN2", "no kernel")


def test_failed_convert_leaves_existing_output_alone(tmp_path, capsys, sine_manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.tflite").write_bytes(b"old")
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(sine_manifest.model_bytes()[:100])
    code, _, _ = run_cli(["convert", str(bad), "-o", str(out)], capsys)
    assert code == 2 and (out / "model.tflite").read_bytes() == b"old"
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite"]


@pytest.mark.parametrize("example, y, words", [
    ("gestures", lambda n: np.full(n, 99), ("99", "4 classes")),
    ("gestures", lambda n: np.full(n, -1), ("-1", "4 classes")),
    ("gestures", lambda n: np.full(n, 0.5), ("1 value(s) per sample", "gives 4")),
    ("gestures", lambda n: np.zeros((n, 7)), ("7 value(s)", "gives 4")),
    ("sine", lambda n: np.zeros((n, 3)), ("3 value(s)", "gives 1")),
])
def test_labels_that_fit_neither_outputs_nor_classes(tmp_path, capsys, converted_examples, example, y, words):
    """Labels are checked against the model's outputs, never broadcast into a meaningless report."""
    manifest = converted_examples[example]
    x = np.load(manifest.source_path("test_data"))["x"][:20]
    data = tmp_path / "test.npz"
    np.savez(data, x=x, y=y(len(x)))
    out = tmp_path / "out"
    assert_refused(["convert", str(manifest.model_path), "-o", str(out), "--test-data", str(data)],
                   capsys, out, "labels", *words)


def test_input_with_unknown_dimensions(tmp_path, capsys, example_files):
    """A variable-length input cannot be fixed for a microcontroller: refused before converting."""
    from deploykit.model import tf_backend
    keras = tf_backend.keras()
    model = keras.Sequential([keras.Input((None, 1)), keras.layers.Dense(1)])
    path = tmp_path / "variable.keras"
    model.save(path)
    out = tmp_path / "out"
    assert_refused(["convert", str(path), "-o", str(out), "--rep-data", str(example_files["sine"]["rep_data"])],
                   capsys, out, "unknown dimensions", "None")


@pytest.mark.parametrize("args, words", [
    (["convert", "--bogus", "m.keras"], ("No such option '--bogus'", "deploykit convert --help")),
    (["convert"], ("Missing argument 'MODEL'",)),
    (["render", "manifest.json", "--board", "virtual", "--arena-size", "lots"], ("'lots' is not a valid integer",)),
    (["no-such-command"], ("No such command",)),
])
def test_usage_errors_are_one_line(tmp_path, capsys, args, words):
    """click's own refusals follow the same rule as BadInput: one line, exit 2."""
    assert_refused(args, capsys, tmp_path / "nothing", *words)


@pytest.mark.slow
def test_float_tflite_asked_for_int8_is_refused_not_silently_kept(tmp_path, capsys, example_files):
    """A float .tflite given --quantize int8 --rep-data used to stay float32 without a word."""
    from deploykit.model.convert import convert
    files = example_files["sine"]
    float_model = convert(files["model"], tmp_path / "float", quantize="float32")
    tflite = float_model.directory / "model.tflite"
    out = tmp_path / "out"
    assert_refused(["convert", str(tflite), "--quantize", "int8", "--rep-data", str(files["rep_data"]),
                    "-o", str(out)], capsys, out, "float32 model", "does not re-quantize", "--quantize int8")
    as_is = convert(tflite, tmp_path / "as_is")
    assert as_is.data["quantization"] == "float32"
