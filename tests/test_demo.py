"""`deploykit demo`: train (or reuse) the sine example, deploy it to a virtual Nano 33 BLE Sense."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_deploy import no_boards  # noqa: F401  (a fixture)

from deploykit import deploy as deploy_mod

pytestmark = pytest.mark.slow  # trains the demo example and deploys it



@pytest.mark.usefixtures("no_boards")
def test_demo_trains_once_then_reuses_the_model(mocker, tmp_path, capsys):
    import deploykit.examples as examples

    real = examples.train_example
    trained = []

    def short_training(name, outdir, seed=0):  # the real training, the quick one for the suite
        trained.append(name)
        return real(name, outdir, seed=seed, quick=True)

    mocker.patch("deploykit.examples.train_example", side_effect=short_training)
    out = tmp_path / "demo"
    assert run_cli(["demo", "-o", str(out), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    html = out / "hil" / "report.html"
    assert f"report: {html}" in stdout and html.is_file() and "PASS" in stdout
    record = json.loads((out / "deploy.json").read_text())
    assert record["virtual_board"] is True and record["board"] == "nano33ble_sense" and record["model"] == "sine"
    assert isinstance(record["timings_s"]["train"], float)
    report = json.loads((out / "hil" / "report.json").read_text())
    assert report["simulated"] is True and report["agreement"]["tflm_host"]["exact_fraction"] == 1.0

    assert run_cli(["demo", "-o", str(out), "--quiet"]) == 0
    assert trained == ["sine"]
    assert json.loads((out / "deploy.json").read_text())["timings_s"]["train"] == "skipped"


@pytest.mark.usefixtures("no_boards")
def test_demo_shows_its_stages(mocker, example_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    out = tmp_path / "demo"
    (out / "example").mkdir(parents=True)
    (out / "example" / "example.json").write_text(json.dumps({k: str(v) for k, v in example_files["sine"].items()}))
    assert run_cli(["demo", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "virtual board (nano33ble_sense profile)" in err
    for stage in ("train", "convert", "render", "build", "flash", "hil"):
        assert stage in err
    assert "skipped: reusing" in err


def test_cached_example_needs_every_file(tmp_path, example_files):
    files = example_files["sine"]
    (tmp_path / "example.json").write_text(json.dumps({k: str(v) for k, v in files.items()}))
    assert deploy_mod.cached_example(tmp_path) == {k: files[k] for k in files}
    (tmp_path / "example.json").write_text(json.dumps({"model": str(files["model"])}))
    assert deploy_mod.cached_example(tmp_path) is None
    (tmp_path / "example.json").write_text("not json")
    assert deploy_mod.cached_example(tmp_path) is None


def test_output_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "afile").write_text("keep")
    assert run_cli(["demo", "-o", str(tmp_path / "afile"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a directory" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "keep"
