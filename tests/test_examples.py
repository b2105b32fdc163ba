"""The example trainers produce real models and data that convert takes as is."""

import numpy as np

from deploykit.model.datafiles import load_data
from deploykit.model.quantization import to_float, to_input_dtype
from deploykit.model.tflm_host import TflmRunner


def test_each_example_writes_model_and_data(example_files):
    for files in example_files.values():
        assert files["model"].suffix == ".keras" and files["model"].stat().st_size > 0
        test = load_data(files["test_data"])
        assert test.y is not None and len(test.y) == len(test.x)
        assert load_data(files["rep_data"]).x.shape[1:] == test.x.shape[1:]


def test_linear_predicts_19_at_10(converted_examples):
    m = converted_examples["linear"]
    runner = TflmRunner(m.model_bytes())
    # 10 is outside the representative range; check inside it and via the float model.
    x = np.array([[3.0]], np.float32)
    y = to_float(runner.predict(to_input_dtype(x, m["inputs"][0])), m["outputs"][0])
    assert abs(float(y[0, 0]) - 5.0) < 0.1
    from deploykit.model import tf_backend
    assert abs(float(tf_backend.predict_float(m.source_path("model"), "keras", np.array([[10.0]]))[0, 0]) - 19) < 0.2


def test_sine_learns_beyond_a_constant(converted_examples):
    report = converted_examples["sine"]["report"]
    # Predicting the mean would give MAE ~1.9 on this data; the trained model does far better.
    assert report["float_vs_target"]["mae"] < 1.0
    assert report["quantized_vs_float"]["mae"] < 0.3


def test_gestures_classifies(converted_examples):
    report = converted_examples["gestures"]["report"]
    assert report["task"] == "classification" and report["classes"] >= 3
    assert report["quantized_accuracy"] > 0.8 and report["top1_agreement"] > 0.9


def test_quick_training_is_the_one_short_training(tmp_path, mocker):
    """Tests and benchmarks train through train_example(quick=True): every example has
    one quick epoch count, and an explicit `epochs` still wins."""
    import deploykit.examples.linear as linear
    from deploykit.examples import EXAMPLES, QUICK_EPOCHS, train_example
    assert set(QUICK_EPOCHS) == set(EXAMPLES)
    seen = mocker.patch.object(linear, "train")  # which epochs it is asked for; training is not the subject
    train_example("linear", tmp_path / "q", quick=True)
    train_example("linear", tmp_path / "e", quick=True, epochs=50)
    assert [c.kwargs["epochs"] for c in seen.call_args_list] == [QUICK_EPOCHS["linear"], 50]


def test_training_is_seeded(tmp_path):
    from deploykit.examples import train_example
    # a few epochs: unseeded, the initial weights alone would already differ
    a = train_example("linear", tmp_path / "a", seed=3, epochs=5)
    b = train_example("linear", tmp_path / "b", seed=3, epochs=5)
    assert np.array_equal(np.load(a["rep_data"])["x"], np.load(b["rep_data"])["x"])
    from deploykit.model import tf_backend
    x = np.array([[1.5]], np.float32)
    assert np.allclose(tf_backend.predict_float(a["model"], "keras", x),
                       tf_backend.predict_float(b["model"], "keras", x))
