"""One validator for manifests (manifest.load) and data files: every command refuses a
hand-edited manifest or a damaged data file in one line (exit 2), never a traceback from
deep inside a stage (struct.error, KeyError, TypeError, AttributeError, MemoryError)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import shutil
import signal
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from numpy.lib import format as npformat

from deploykit.cli import main
from deploykit.errors import BadInput
from deploykit.model import manifest as manifest_mod
from deploykit.model.datafiles import load_data


def _tensor(key, **fields):
    def change(d):
        d[key][0].update(fields)
    return change


def _arena(d):
    d["arena"]["projections"] = {k: 10 ** 12 for k in d["arena"]["projections"]}


def _outside(d):
    d["model_file"] = "../outside/model.tflite"


# name -> (edit of the manifest data, a word the one-line refusal names)
BAD = {
    "zero point 10^12 in": (_tensor("inputs", zero_point=10 ** 12), "inputs[0].zero_point"),
    "zero point 10^12 out": (_tensor("outputs", zero_point=10 ** 12), "outputs[0].zero_point"),
    "shape of 70,000": (_tensor("inputs", shape=[1, 70_000]), "inputs[0].shape"),
    "dtype int3": (_tensor("inputs", dtype="int3"), "int3"),
    "dtype float64": (_tensor("outputs", dtype="float64"), "float64"),
    "dtype complex64": (_tensor("inputs", dtype="complex64"), "complex64"),
    "arena 10^12": (_arena, "arena.projections"),
    "source abc": (lambda d: d.update(source="abc"), "source"),
    "scale 1e300": (_tensor("inputs", scale=1e300), "inputs[0].scale"),
    "model_file outside": (_outside, "model_file"),
    "scale NaN": (_tensor("outputs", scale=math.nan), "outputs[0].scale"),
    "label column list": (lambda d: d["source"].update(label_column=[1]), "label_column"),  # a name is fine
}


def bad_manifest(good, root: Path, edit) -> Path:
    """A copy of a converted manifest (model beside it, sources absolute) with one edit.

    A decoy copy of the model sits in root/outside, so a model_file leading there names
    a real file and only the validator can refuse it.
    """
    for folder in ("m", "outside"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(good.model_path, root / folder / "model.tflite")
    data = copy.deepcopy(good.data)
    data["source"] = {k: (str(good.source_path(k)) if k in ("model", "rep_data", "test_data") else v)
                      for k, v in data["source"].items()}
    edit(data)
    path = root / "m" / "manifest.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def cli(capsys, *argv) -> tuple[int, str]:
    def hung(signum, frame):  # a manifest that slips through makes virtual-board serve forever
        raise TimeoutError(f"`deploykit {argv[0]}` did not refuse the manifest")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return exc.value.code, capsys.readouterr().err


def assert_one_line(code, err, word):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("deploykit: error: "), err
    assert word in lines[0] and "Traceback" not in err


COMMANDS = {
    "render": lambda m, out: ["render", str(m), "--board", "nano33ble_sense", "-o", str(out)],
    "hil run": lambda m, out: ["hil", "run", "--manifest", str(m), "--port", f"virtual://{m}?pacing=0",
                               "--limit", "3", "--quiet", "-o", str(out)],
    "virtual-board": lambda m, out: ["virtual-board", str(m), "--no-pacing", "--link", str(out)],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BAD)
def test_every_command_refuses_a_bad_manifest_in_one_line(sine_manifest, tmp_path, capsys, case, command):
    edit, word = BAD[case]
    manifest = bad_manifest(sine_manifest, tmp_path, edit)
    out = tmp_path / "out"
    code, err = cli(capsys, *COMMANDS[command](manifest, out))
    assert_one_line(code, err, word)
    assert not out.exists()


def test_the_device_url_refuses_a_bad_manifest_too(sine_manifest, tmp_path, capsys):
    """A good --manifest, a virtual:// device serving a bad one: the same one line."""
    bad = bad_manifest(sine_manifest, tmp_path, _tensor("outputs", zero_point=10 ** 12))
    code, err = cli(capsys, "hil", "run", "--manifest", str(sine_manifest.path), "--port",
                    f"virtual://{bad}?pacing=0", "--quiet", "-o", str(tmp_path / "out"))
    assert_one_line(code, err, "outputs[0].zero_point")


def test_model_file_must_stay_in_the_folder(sine_manifest, tmp_path):
    """An absolute path and a symlink leading out are refused like `..`; a plain name loads."""
    manifest = bad_manifest(sine_manifest, tmp_path, lambda d: None)
    assert manifest_mod.load(manifest).model_path == manifest.parent / "model.tflite"
    decoy = tmp_path / "outside" / "model.tflite"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(data, model_file=str(decoy))))
    with pytest.raises(BadInput, match="relative to the manifest's folder"):
        manifest_mod.load(manifest)
    (manifest.parent / "model.tflite").unlink()
    (manifest.parent / "model.tflite").symlink_to(decoy)
    manifest.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="outside the manifest's folder"):
        manifest_mod.load(manifest)
    assert decoy.is_file()


def _fake_npy(shape, body: bytes = b"\0" * 64) -> bytes:
    fh = io.BytesIO()
    npformat.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return fh.getvalue() + body


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_header_claiming_373_gib_is_one_line_and_allocates_nothing(tmp_path, suffix):
    path = tmp_path / f"huge{suffix}"
    if suffix == ".npy":
        path.write_bytes(_fake_npy((100_000_000_000,)))
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x.npy", _fake_npy((100_000_000_000,)))
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match="400,000,000,000 bytes") as exc:
            load_data(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(exc.value) and "damaged or truncated" in str(exc.value)
    assert peak < 10 * 2 ** 20


def test_hil_run_refuses_the_huge_header_in_one_line(sine_manifest, tmp_path, capsys):
    data = tmp_path / "huge.npy"
    data.write_bytes(_fake_npy((100_000_000_000, 1)))
    code, err = cli(capsys, "hil", "run", "--manifest", str(sine_manifest.path), "--port",
                    f"virtual://{sine_manifest.path}?pacing=0", "--data", str(data), "-o", str(tmp_path / "r"))
    assert_one_line(code, err, "huge.npy")


def test_a_truncated_array_names_both_sizes(tmp_path):
    path = tmp_path / "short.npy"
    path.write_bytes(_fake_npy((10, 3), body=b"\0" * 8))
    with pytest.raises(BadInput, match="120 bytes.*holds 8"):
        load_data(path)
    np.save(tmp_path / "fine.npy", np.ones((10, 3), np.float32))
    assert load_data(tmp_path / "fine.npy").x.shape == (10, 3)


# ---- hypothesis: any edit of any field is either accepted by every stage or BadInput ----

TRICKY = st.sampled_from([
    None, True, 0, -1, 1, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 10 ** 12, 10 ** 30, -(10 ** 12),
    0.0, -0.5, 1e-50, 1e300, math.inf, math.nan, "", "int3", "float64", "complex64", "int8", "float32",
    "../model.tflite", "model.tflite", "x" * 300, [], {}, [1], [1, 70000], [[1]], {"a": 1},
])
VALUES = st.one_of(TRICKY, st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=8),
                   st.lists(TRICKY, max_size=3), st.dictionaries(st.text(max_size=6), TRICKY, max_size=3))


def _paths(value, prefix=()):
    """Every (path) into a JSON value, containers included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _mutate(data, path, value):
    """`data` with the value at `path` replaced (a dict key deleted when value is the marker)."""
    if not path:
        return None if value is _DELETE else value
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = None if value is _DELETE else value
    return data


_DELETE = object()


def _every_stage(path: Path, board) -> None:
    """What render, the virtual board and the harness do with a loaded manifest."""
    from deploykit.firmware.render import plan
    from deploykit.harness.inputs import load_inputs
    from deploykit.protocol import Hello
    from deploykit.virtual_board.cost import inference_timing
    from deploykit.virtual_board.firmware import arena_figures, make_hello

    manifest = manifest_mod.load(path)
    configured, used, _ = arena_figures(manifest, board)
    hello = make_hello(manifest, board, configured, used)
    assert Hello.parse(hello.payload()).payload() == hello.payload()  # scales round to float32
    inference_timing(manifest["ops"], board)
    load_inputs(manifest, limit=2)
    plan(path, board.id)


@pytest.fixture(scope="module")
def fuzz_base(sine_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    good = bad_manifest(sine_manifest, root, lambda d: None)
    return json.loads(good.read_text()), good


# slow: 250 mutated manifests; the fast loop keeps each bad-manifest case against every command
# (test_every_command_refuses_a_bad_manifest_in_one_line)
@pytest.mark.slow
@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_manifests_are_accepted_or_bad_input(fuzz_base, data):
    from deploykit.firmware.boards import load_board

    base, path = fuzz_base
    manifest = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(_paths(manifest))))
        value = data.draw(st.one_of(st.just(_DELETE), VALUES))
        # TRICKY's lists and dicts are shared objects: a copy keeps one example's edits out of
        # the next (and a value from being put inside itself, a cycle json.dumps cannot write).
        value = value if value is _DELETE else copy.deepcopy(value)
        manifest = _mutate(manifest, where, value)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with contextlib.suppress(BadInput):
        _every_stage(path, load_board("nano33ble_sense"))


@pytest.mark.slow
def test_convert_refuses_a_model_the_wire_cannot_carry_before_writing(tmp_path):
    """A real Keras model with 70,000 inputs converts in TFLite, but no HELLO can carry a
    dim over 65,535: convert says so and writes nothing (it used to write a manifest every
    later stage refused or crashed on)."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert

    keras = tf_backend.keras()
    model = keras.Sequential([keras.Input(shape=(70_000,)), keras.layers.Dense(1)])
    model.save(tmp_path / "wide.keras")
    np.savez(tmp_path / "rep.npz", x=np.random.default_rng(0).normal(size=(4, 70_000)).astype(np.float32))
    out = tmp_path / "out"
    with pytest.raises(BadInput, match=r"inputs\[0\]\.shape\[1\] is 70,000"):
        convert(tmp_path / "wide.keras", out, rep_data=tmp_path / "rep.npz")
    assert not out.exists()
