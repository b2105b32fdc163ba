"""Issue 11's remaining shapes, end to end on the virtual board through `hil run`:

- an image classifier on 96x96x3 int8 inputs: a record of 27,648 bytes, about a hundred
  frames of the protocol's payload, on boards of two link kinds;
- a float32 recurrent model that TFLite's converter lowers to a WHILE loop (its body a
  subgraph of its own), taken as a .tflite as it is.

Each must equal TFLM on the host exactly, sample by sample.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

SIDE, CHANNELS = 96, 3


def _images(n: int, seed: int):
    """Two classes: a bright top half or a bright bottom half, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, 0.3, (n, SIDE, SIDE, CHANNELS)).astype(np.float32)
    half = SIDE // 2
    for i, label in enumerate(y):
        rows = slice(0, half) if label == 0 else slice(half, SIDE)
        x[i, rows] += 1.0
    return x, y.astype(np.int64)


def _hil(manifest_path, board: str, out_dir, capsys) -> dict:
    code, _, err = run_cli(["hil", "run", "--manifest", manifest_path, "--port",
                            f"virtual://{manifest_path}?pacing=0&board={board}", "-o", out_dir, "--quiet"], capsys)
    assert code == 0, err
    return json.loads((out_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory):
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    tf = tf_backend.tf()
    root = tmp_path_factory.mktemp("image96")
    tf.keras.utils.set_random_seed(0)
    x, y = _images(64, 0)
    model = tf.keras.Sequential([
        tf.keras.Input((SIDE, SIDE, CHANNELS)),
        tf.keras.layers.Conv2D(4, 3, strides=4, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    model.save(root / "image.keras")
    tx, ty = _images(12, 1)
    np.savez(root / "rep.npz", x=x[:32])
    np.savez(root / "test.npz", x=tx, y=ty)
    return convert(root / "image.keras", root / "m", name="image96", rep_data=root / "rep.npz",
                   test_data=root / "test.npz")


@pytest.mark.slow
@pytest.mark.parametrize("board", ["nano33ble_sense", "esp32dev"])   # USB CDC and UART links
def test_a_96x96x3_image_goes_in_records_of_many_frames_and_agrees_exactly(image_manifest, board, tmp_path,
                                                                          capsys):
    spec = image_manifest["inputs"][0]
    assert spec["shape"][1:] == [SIDE, SIDE, CHANNELS] and spec["dtype"] == "int8"   # 27,648 bytes a record
    report = _hil(image_manifest.path, board, tmp_path / "hil", capsys)
    assert report["samples"] == 12 and report["samples_failed"] == 0
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0


@pytest.fixture(scope="module")
def looped_tflite(tmp_path_factory):
    """A Keras LSTM converted by TFLite's own converter (float32): a WHILE loop over 12 steps."""
    from deploykit.model import tf_backend
    from deploykit.model.tflite_model import parse
    tf, keras = tf_backend.tf(), tf_backend.keras()
    root = tmp_path_factory.mktemp("looped")
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((12, 3), batch_size=1), keras.layers.LSTM(6), keras.layers.Dense(2)])
    data = tf.lite.TFLiteConverter.from_keras_model(net).convert()
    assert any(o.op == "WHILE" for o in parse(data).operators)   # the loop this test is about
    (root / "looped.tflite").write_bytes(data)
    x = np.random.default_rng(2).normal(size=(20, 12, 3)).astype(np.float32)
    np.savez(root / "test.npz", x=x)
    return root


@pytest.mark.slow
def test_a_while_loop_model_taken_as_is_runs_exactly_on_the_virtual_board(looped_tflite, tmp_path, capsys):
    code, _, err = run_cli(["convert", looped_tflite / "looped.tflite", "-o", tmp_path / "m",
                            "--data", looped_tflite / "test.npz"], capsys)
    assert code in (0, None), err
    manifest = tmp_path / "m" / "manifest.json"
    assert json.loads(manifest.read_text())["quantization"] == "float32"
    report = _hil(manifest, "nano33ble_sense", tmp_path / "hil", capsys)
    assert report["samples"] == 20 and report["samples_failed"] == 0
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
