"""Session fixtures shared by every test module: examples trained once, converted once.

Training is the examples' quick one (deploykit.examples.QUICK_EPOCHS: seconds); the models
still learn enough to be real.
"""

from __future__ import annotations

import pytest

from deploykit.examples import EXAMPLES


def run_cli(args, capsys=None):
    """`deploykit ARGS` in-process, as the console script runs it: its exit status, or with
    `capsys` (status, stdout, stderr). The one CLI runner of the suite (`from conftest import run_cli`)."""
    from deploykit.cli import main
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    if capsys is None:
        return exit_.value.code
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def reopen(url, baud: int = 115200, timeout: float = 0.05, within: float = 5.0):
    """Open `url` (or reopen a closed port object) once a board that re-enumerates after a
    disconnect is back (retries for `within` s)."""
    import time

    from deploykit.errors import DeployKitError
    from deploykit.link import ports
    deadline = time.monotonic() + within
    while True:
        try:
            return ports.open_port(url, baud, timeout) if isinstance(url, str) else ports.reopen_port(url, url.port)
        except DeployKitError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def error_lines(err: str) -> list[str]:
    """The non-blank lines of a command's stderr (a bad input is exactly one)."""
    return [line for line in err.splitlines() if line.strip()]

@pytest.fixture(scope="session")
def example_files(tmp_path_factory) -> dict:
    """name -> {"model", "rep_data", "test_data"} paths of each trained example."""
    from deploykit.examples import train_example
    root = tmp_path_factory.mktemp("examples")
    return {name: train_example(name, root / name, seed=0, quick=True) for name in EXAMPLES}


@pytest.fixture(scope="session")
def converted_examples(example_files, tmp_path_factory) -> dict:
    """name -> Manifest of each example converted to int8 with its rep and test data."""
    from deploykit.model.convert import convert
    root = tmp_path_factory.mktemp("converted")
    return {name: convert(files["model"], root / name, name=name, quantize="int8",
                          rep_data=files["rep_data"], test_data=files["test_data"])
            for name, files in example_files.items()}


@pytest.fixture(scope="session")
def sine_manifest(converted_examples):
    return converted_examples["sine"]


@pytest.fixture(scope="session")
def atan2_saved_model(tmp_path_factory):
    """A real SavedModel using ATAN2, an op TFLite has and TFLM does not."""
    from deploykit.model import tf_backend
    tf = tf_backend.tf()

    class Angle(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def __call__(self, x):
            return {"angle": tf.math.atan2(x[:, :1], x[:, 1:])}

    path = tmp_path_factory.mktemp("atan2") / "saved"
    module = Angle()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


@pytest.fixture(scope="session")
def atan2_tflite(atan2_saved_model):
    """The ATAN2 SavedModel converted by TFLite as is (float), for `inspect`."""
    from deploykit.model import tf_backend
    tf = tf_backend.tf()
    path = atan2_saved_model.parent / "atan2.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(atan2_saved_model)).convert())
    return path
