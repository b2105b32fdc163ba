"""The light install (`pip install deploykit`: no TensorFlow, no LiteRT, no tflite-micro):
`hil run` compares against the TFLM-host outputs `convert` stored beside the manifest, the
virtual board says in one line that it needs the tflite-micro wheel, and a real venv
without those packages runs `hil run` against a device."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import deploykit
from deploykit import extras
from deploykit.cli import main
from deploykit.model import reference

REPO = Path(deploykit.__file__).resolve().parents[1]
HEAVY = ("tensorflow", "ai_edge_litert", "tflite_micro")


def cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture
def no_heavy_references(monkeypatch):
    """reference.py as on a host without TensorFlow, LiteRT and tflite-micro; TFLM-host's
    predict raising proves no reference came from a live interpreter."""
    fake = types.SimpleNamespace(available=lambda m: m not in HEAVY and extras.available(m))
    monkeypatch.setattr(reference, "extras", fake)

    def no_tflm(*args, **kwargs):
        raise AssertionError("a TFLM interpreter was used for the reference")

    monkeypatch.setattr("deploykit.model.tflm_host.TflmRunner.predict", no_tflm)


def test_convert_stores_tflm_outputs_for_its_test_data(sine_manifest, example_files):
    entry = sine_manifest["tflm_reference"]
    from importlib.metadata import version
    assert entry["tflm_version"] == version("tflite-micro") and entry["samples"] == 1000
    with np.load(sine_manifest.directory / entry["file"]) as npz:
        assert npz["inputs"].dtype == np.int8 and npz["outputs"].shape == (1000, 1)


def test_hil_run_without_tflite_micro_uses_the_stored_outputs(sine_manifest, tmp_path, capsys, no_heavy_references):
    code, out, err = cli(capsys, "hil", "run", "--manifest", str(sine_manifest.path), "--port",
                         f"virtual://{sine_manifest.path}?pacing=0", "--limit", "40", "--quiet",
                         "--min-agreement", "1.0", "-o", str(tmp_path / "r"))
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0 and report["samples"] == 40
    assert "desktop" not in report["agreement"] and report["accuracy"]["float"] is None


def test_stored_outputs_are_used_only_for_inputs_they_hold(sine_manifest, tmp_path):
    """Other data, or a damaged file: no TFLM-host reference, never a wrong one."""
    spec = sine_manifest["inputs"][0]
    with np.load(sine_manifest.directory / "tflm_reference.npz") as npz:
        inputs, outputs = npz["inputs"], npz["outputs"]
    picked = reference.stored_tflm_outputs(sine_manifest, inputs[[5, 2, 5]])
    assert np.array_equal(picked, outputs[[5, 2, 5]])
    unseen = next(v for v in range(-128, 128) if v not in inputs.ravel())
    assert reference.stored_tflm_outputs(sine_manifest, np.array([[unseen]], np.int8)) is None
    assert reference.stored_tflm_outputs(sine_manifest, inputs[:3].astype(np.int16)) is None
    copy = tmp_path / "m"
    shutil.copytree(sine_manifest.directory, copy)
    from deploykit.model.manifest import load
    damaged = copy / "tflm_reference.npz"
    damaged.write_bytes(damaged.read_bytes()[:-10] + bytes(10))
    assert reference.stored_tflm_outputs(load(copy), inputs[:3]) is None
    assert spec["dtype"] == "int8"


@pytest.mark.parametrize("machine, words", [("x86_64", "pip install 'deploykit[tflm]'"),
                                            ("aarch64", "no tflite-micro wheel for Linux aarch64")])
def test_virtual_board_without_tflite_micro_is_one_line(sine_manifest, capsys, monkeypatch, machine, words):
    monkeypatch.setattr(extras, "available", lambda m: m != "tflite_micro")
    monkeypatch.setattr(extras.platform, "machine", lambda: machine)
    monkeypatch.setattr(extras.platform, "system", lambda: "Linux")
    code, out, err = cli(capsys, "virtual-board", str(sine_manifest.path), "--no-pacing")
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1 and "virtual board" in lines[0] and words in lines[0], err
    assert "Traceback" not in err and out == ""


# ---- a real venv without TensorFlow, LiteRT or tflite-micro ---------------------------

def _pip_reaches_an_index(tmp_path: Path) -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                            "--timeout", "15", "--retries", "0", "-d", str(tmp_path / "probe"), "cobs"],
                           capture_output=True, text=True, timeout=120)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("light")
    if not _pip_reaches_an_index(root):
        pytest.skip("pip cannot reach a package index: the light-install test needs one")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    bin_dir = root / "venv" / "bin"
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "--no-compile", "--prefer-binary", str(REPO)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def _run(bin_dir, *args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(bin_dir / "deploykit"), *args], capture_output=True, text=True,
                          timeout=120, env=env, **kwargs)


@pytest.mark.slow
def test_light_install_runs_hil_against_a_device(light_venv, sine_manifest, tmp_path):
    """`pip install deploykit` into a bare venv: no heavy package, the commands answer,
    bad input is one line, and `hil run` against a virtual board served by the full
    install (a device on a pty) passes with exact agreement from the stored outputs."""
    python = light_venv / "python"
    for module in HEAVY:
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode != 0
    for command in (["hil", "run", "--help"], ["flash", "--help"], ["build", "--help"], ["devices", "--json"]):
        assert _run(light_venv, *command).returncode == 0, command
    bad = _run(light_venv, "hil", "run", "--manifest", str(tmp_path / "nope.json"), "--port", "/dev/null")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "does not exist" in bad.stderr
    vb = _run(light_venv, "virtual-board", str(sine_manifest.path))
    assert vb.returncode == 3 and "tflite-micro" in vb.stderr and len(vb.stderr.strip().splitlines()) == 1

    link = tmp_path / "board"
    server = subprocess.Popen([sys.executable, "-m", "deploykit", "virtual-board", str(sine_manifest.path),
                               "--no-pacing", "--link", str(link)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert server.stdout.readline().strip() == str(link)
        run = _run(light_venv, "hil", "run", "--manifest", str(sine_manifest.path), "--port", str(link),
                   "--limit", "30", "--quiet", "--min-agreement", "1.0", "-o", str(tmp_path / "r"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["samples"] == 30 and report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
