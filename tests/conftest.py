"""Session fixtures shared by every test module: examples trained once, converted once.

Training is the examples' quick one (deploykit.examples.QUICK_EPOCHS: seconds); the models
still learn enough to be real. Conversions done for fixtures call TensorFlow's converter in
this process (converter_in_process): the suite has TensorFlow imported already, and a probe
child imports it again for each model (seconds each).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]
CPP_CORE = ROOT / "firmware_templates" / "src"
CPP_FLAGS = ["-std=c++11", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{CPP_CORE}"]


def error_lines(err: str) -> list[str]:
    """The non-blank lines of a command's stderr (a bad input is exactly one)."""
    return [line for line in err.splitlines() if line.strip()]

@contextlib.contextmanager
def converter_in_process():
    """Within: `convert` calls TensorFlow's converter in this process rather than in a probe
    child (which imports TensorFlow afresh, ~3 s a model). The same converter makes the same
    bytes; only the crash containment is left out, which tests/test_convert_recurrent.py and
    the slow end-to-end conversions keep testing. For fixtures and tests whose subject is
    not the isolation."""
    from deploykit.model import convert as convert_module
    from deploykit.model.isolated import ChildResult

    def in_process(fn, *args):
        try:
            return ChildResult(True, fn(*args), "", "exit 0")
        except Exception as exc:  # what the child would have sent back (a BadInput keeps its type)
            return ChildResult(False, None, f"{type(exc).__name__}: {exc}", "exit 3", exc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(convert_module, "run_isolated", in_process)
        yield


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
    with converter_in_process():  # training imported TensorFlow here already
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


@pytest.fixture(scope="session")
def cpp_programs(tmp_path_factory) -> dict[str, Path]:
    """The firmware's C++ protocol core compiled with the host g++ into the vector checker and
    the POSIX device of tests/cpp/ (in parallel), once per session: here and not in a test
    module, since a fixture imported into several modules is a fixture per module (one build each)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: install it (apt-get install g++) to test the C++ protocol core")
    out = tmp_path_factory.mktemp("cpp")
    jobs = {
        # "decode" takes its limit at run time up to DK_MAX_PAYLOAD; vectors use up to 512.
        "vector_checker": CPP_FLAGS + ["-DDK_MAX_PAYLOAD=1024"],
        "posix_device": CPP_FLAGS,
        # outputs larger than one RESULT of the default 256-byte payload: sent as RESULT_PARTs
        "posix_device_big": CPP_FLAGS + ["-DDK_MAX_OUTPUT_BYTES=640"],
        # built without selective repeat: drops frames after a gap (go-back-N), no hold buffer
        "posix_device_gbn": CPP_FLAGS + ["-DDK_SELECTIVE_ACK=0"],
    }
    def source(name: str) -> str:  # the _big and _gbn programs are the same source, built otherwise
        return str(ROOT / "tests" / "cpp" / f"{name.removesuffix('_big').removesuffix('_gbn')}.cpp")

    procs = {name: subprocess.Popen([gxx, *flags, source(name),
                                     str(CPP_CORE / "dk_protocol.cpp"), "-o", str(out / name)],
                                    stderr=subprocess.PIPE, text=True)
             for name, flags in jobs.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"g++ failed on {name}:\n{err}"
    return {name: out / name for name in jobs}
