"""`deploykit build`: the CLI over pio.build_project, with `pio` replayed from captured output."""

from __future__ import annotations

import json

import pytest

from deploykit.cli import main
from test_pio_fakes import hide_platformio_module, install

INI = "[env:nano33ble_sense]\nplatform = nordicnrf52\nboard = nano33ble\nframework = arduino\n"


@pytest.fixture
def project(tmp_path):
    d = tmp_path / "fw"
    d.mkdir()
    (d / "platformio.ini").write_text(INI)
    return d


def run_cli(args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    return exit_.value.code


def test_build_records_sizes(mocker, project, capsys):
    fake = install(mocker).then("build_success.txt", 0)
    assert run_cli(["build", str(project), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "RAM 49,172 / 262,144 B (18.8%)" in out and "flash 2,556 / 983,040 B" in out
    recorded = json.loads((project / "build.json").read_text())
    assert recorded["sizes"] == {"ram_used": 49172, "ram_total": 262144, "flash_used": 2556, "flash_total": 983040}
    assert fake.calls[0][-4:] == ["-e", "nano33ble_sense", "-d", str(project)]


@pytest.mark.parametrize("fixture, expect", [
    ("build_platform_download_failed.txt", "could not download platform nordicnrf52"),
    ("build_library_git_failed.txt", "could not download library git+https://github.com/spaziochirale"),
    ("build_compile_error.txt", "src/main.cpp:3:8: error: 'tflite' does not name a type"),
    ("build_ram_overflow.txt", "RAM overflowed by 37888 bytes"),
    ("build_flash_overflow.txt", "flash overflowed by 117044 bytes"),
])
def test_build_failures_are_explained(mocker, project, capsys, fixture, expect):
    install(mocker).then(fixture, 1)
    assert run_cli(["build", str(project), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("deploykit: error: ") and expect in err and "Traceback" not in err
    assert str(project / "build.log") in err
    assert not (project / "build.json").exists()


def test_pio_missing(mocker, project, capsys, tmp_path):
    mocker.patch("deploykit.toolchain.pio.sys.executable", str(tmp_path / "nowhere" / "python"))
    hide_platformio_module(mocker)
    mocker.patch("deploykit.toolchain.pio.shutil.which", return_value=None)
    assert run_cli(["build", str(project), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "PlatformIO (`pio`) is not installed" in err and "pip install platformio" in err


@pytest.mark.parametrize("setup, expect", [
    (lambda d: None, "is not a PlatformIO project"),
    (lambda d: (d / "platformio.ini").write_text(INI), "has no env 'esp32dev'"),
    (lambda d: (d / "platformio.ini").write_text("[env:a\nboard = x\n"), "cannot be read by PlatformIO"),
])
def test_bad_input_one_line_exit_2_nothing_written(mocker, tmp_path, capsys, setup, expect):
    popen = mocker.patch("deploykit.toolchain.pio.subprocess.Popen")
    d = tmp_path / "p"
    d.mkdir()
    setup(d)
    before = sorted(p.name for p in d.iterdir())
    assert run_cli(["build", str(d), "--board", "esp32dev", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in d.iterdir()) == before
    popen.assert_not_called()
