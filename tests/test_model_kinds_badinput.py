"""Models TFLM or the boards cannot take (issue 11): each refusal is one line, exit 2, naming
the model, the tensor or op and the limit; nothing is written. And the other side of a
board's limit: a model with a few hundred KB of arena renders for the boards that hold it,
is refused with both numbers on the others, and runs on the virtual board as a big board."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import error_lines, run_cli

from deploykit.errors import BadInput
from deploykit.firmware import render
from deploykit.firmware.boards import all_boards, load_board


def concrete_tflite(tf, path, fn, spec) -> str:
    """A .tflite of one tf.function, as TF's converter writes it (float, no quantization)."""
    from deploykit.model import tf_backend
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(fn, input_signature=[spec]).get_concrete_function()])
    with tf_backend._quiet():
        path.write_bytes(converter.convert())
    return str(path)


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """.tflite files whose tensors TFLM's kernels cannot take, each made by TF's own converter."""
    from deploykit.model import tf_backend
    tf = tf_backend.tf()
    root = tmp_path_factory.mktemp("odd")
    return {
        "float64": concrete_tflite(tf, root / "f64.tflite", lambda x: tf.cast(x, tf.float32) * 2.0,
                                   tf.TensorSpec([1, 4], tf.float64, name="x")),
        "complex64": concrete_tflite(tf, root / "c64.tflite", lambda x: tf.math.real(tf.cast(x, tf.complex64)),
                                     tf.TensorSpec([1, 4], tf.float32, name="x")),
        "int64_add": concrete_tflite(tf, root / "i64.tflite", lambda x: x + tf.constant(3, tf.int64),
                                     tf.TensorSpec([1, 4], tf.int64, name="x")),
        "int64_argmax": concrete_tflite(tf, root / "am.tflite", lambda x: tf.argmax(x, axis=1),
                                        tf.TensorSpec([1, 4], tf.float32, name="x")),
    }


def refused(args, capsys) -> str:
    code, _, err = run_cli(args, capsys)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


@pytest.mark.parametrize("kind, words", [
    ("float64", ["f64.tflite", "tensor 'x'", "the model input", "CAST", "is float64", "no TFLM kernel"]),
    ("complex64", ["c64.tflite", "complex64", "CAST", "no TFLM kernel"]),
    # before: "TFLM could not allocate this model even with a 16,777,216-byte arena"
    ("int64_add", ["i64.tflite", "TFLM's ADD kernel", "'x' int64", "Type INT64 (4) not supported"]),
    ("int64_argmax", ["am.tflite", "ARG_MAX", "outputs 'Identity' int64", "got INT64"]),
])
def test_dtype_tflm_cannot_run_is_named(kind, words, odd_models, tmp_path, capsys):
    for args in (["inspect", odd_models[kind]], ["convert", odd_models[kind], "-o", tmp_path / "o"]):
        line = refused(args, capsys)
        assert all(w in line for w in words), line
        assert "arena" not in line
    assert not (tmp_path / "o").exists()


def test_op_tflm_lacks_is_named_without_the_whole_op_list(atan2_tflite, capsys):
    """Before: the message listed every one of TFLM's ~100 ops after the missing one."""
    line = refused(["inspect", atan2_tflite], capsys)
    assert "atan2.tflite uses op(s) ATAN2" in line and "no kernel" in line
    assert "CONV_2D" not in line and len(line) < 300


def test_custom_keras_layer_is_named_in_one_whole_line(tmp_path, capsys):
    """A .keras with a custom layer whose code is not imported: the layer named and Keras' own
    sentence whole (before: cut at 160 characters, before the layer's name)."""
    from deploykit.model import tf_backend
    keras = tf_backend.keras()

    @keras.saving.register_keras_serializable(package="kinds_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    model = keras.Sequential([keras.Input((4,)), Doubler(), keras.layers.Dense(2)])
    model.save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("kinds_test>Doubler")  # as in a process without its code
    line = refused(["convert", tmp_path / "custom.keras", "-o", tmp_path / "o", "--quantize", "float32"], capsys)
    assert "custom.keras uses the custom layer or object 'Doubler'" in line
    assert "before trying to load them" in line and "model.export" in line  # Keras' sentence, whole
    assert "Full object config" not in line and len(line) > 160
    assert not (tmp_path / "o").exists()


def conv_model(tf, side: int, filters: int):
    """One wide convolution: its output (side² × filters int8) sets the arena."""
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([tf.keras.Input((side, side, 1)),
                                tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                                tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(2)])


def convert_conv(tmp_path, side, filters, samples=6):
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    conv_model(tf_backend.tf(), side, filters).save(tmp_path / "conv.keras")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((samples, side, side, 1)).astype(np.float32))
    return convert(tmp_path / "conv.keras", tmp_path / "m", name=f"conv{side}x{filters}",
                   rep_data=tmp_path / "d.npz", test_data=tmp_path / "d.npz")


@pytest.mark.slow  # builds and converts a large CNN; the fit refusal's wording is in the fast test_limits11/test_render
def test_model_that_fits_no_board_names_its_need_and_the_largest_board(tmp_path, capsys):
    """128×128×48 int8 activations (~800 KB of arena) fit none of the boards' RAM."""
    m = convert_conv(tmp_path, 128, 48, samples=3)
    need = m.arena_projection("cortex-m-cmsis-nn", "teensy41")
    assert need > 786_432
    largest = max(all_boards(), key=lambda b: b.ram_bytes - b.runtime_ram_bytes)
    budget = largest.ram_bytes - largest.runtime_ram_bytes
    line = refused(["inspect", m.model_path], capsys)
    assert f"'{m.model_path}' fits no board" in line and f"the largest board, {largest.id}, has {budget:,} B" in line
    assert "smallest need is" in line and "B arena on" in line
    line = refused(["render", m.path, "--board", largest.id, "-o", tmp_path / "fw"], capsys)
    assert "B of arena" in line and f"({budget:,} B): does not fit" in line and "fits no shipped board" in line
    assert not (tmp_path / "fw").exists()


@pytest.mark.slow  # builds and converts a large CNN; the fit refusal's wording is in the fast test_limits11/test_render
def test_a_few_hundred_kb_of_arena_fits_the_big_boards_only(tmp_path, capsys):
    """48×48×128 int8 activations (~300 KB): rendered for the boards that hold it, refused with
    both numbers on the others, run exactly on the virtual board as teensy41 and refused as a nano."""
    m = convert_conv(tmp_path, 48, 128)
    code, out, err = run_cli(["inspect", m.model_path, "--json"], capsys)
    assert code in (0, None), err
    rows = {r["board"]: r for r in json.loads(out)["board_fit"]}
    fitting = sorted(b for b, r in rows.items() if r["fits"])
    assert "teensy41" in fitting and "nano33ble_sense" not in fitting and "esp32dev" not in fitting
    for board_id, row in rows.items():
        if row["fits"]:
            render.render(m.path, board_id, tmp_path / "fw" / board_id)
            continue
        with pytest.raises(BadInput) as info:
            render.plan(m.path, board_id)
        board = load_board(board_id)
        assert f"needs {row['arena']:,} B of arena" in str(info.value)
        assert f"{board.ram_bytes:,} B of RAM less {board.runtime_ram_bytes:,} B" in str(info.value)
        assert "teensy41" in str(info.value)  # where it does fit
    code, _, err = run_cli(["hil", "run", "--manifest", m.path, "--port",
                            f"virtual://{m.path}?pacing=0&board=teensy41", "-o", tmp_path / "r", "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0 and report["samples"] == 6
    line = refused(["hil", "run", "--manifest", m.path, "--port",
                    f"virtual://{m.path}?pacing=0&board=nano33ble_sense", "-o", tmp_path / "r2", "--quiet"], capsys)
    assert "B of arena" in line and "262,144 B of RAM" in line
