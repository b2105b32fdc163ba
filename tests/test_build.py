"""`deploykit build`: the CLI over pio.build_project, with `pio` replayed from captured output."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_pio_fakes import hide_platformio_module, install

INI = "[env:nano33ble_sense]\nplatform = nordicnrf52\nboard = nano33ble\nframework = arduino\n"


@pytest.fixture
def project(tmp_path):
    d = tmp_path / "fw"
    d.mkdir()
    (d / "platformio.ini").write_text(INI)
    return d


def test_build_records_sizes(mocker, project, capsys):
    fake = install(mocker).then("build_success.txt", 0)
    assert run_cli(["build", str(project), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "RAM 49,172 / 262,144 B (18.8%)" in out and "flash 2,556 / 983,040 B" in out
    recorded = json.loads((project / "build.json").read_text())
    assert recorded["sizes"] == {"ram_used": 49172, "ram_total": 262144, "flash_used": 2556, "flash_total": 983040}
    assert fake.calls[0][-4:] == ["-e", "nano33ble_sense", "-d", str(project)]


@pytest.mark.parametrize("fixture, expect, code", [
    # the rig (toolchain) failed: 3
    ("build_platform_download_failed.txt", "could not download platform nordicnrf52", 3),
    ("build_library_git_failed.txt", "could not download library git+https://github.com/spaziochirale", 3),
    ("build_library_registry_failed.txt", "could not download library tanakamasayuki/TensorFlowLite_ESP32", 3),
    ("build_compile_error.txt", "src/main.cpp:3:8: error: 'tflite' does not name a type", 3),
    # the toolchain worked and measured a model too big for the board: a regression, 1
    ("build_ram_overflow.txt", "RAM overflowed by 37888 bytes", 1),
    ("build_flash_overflow.txt", "flash overflowed by 117044 bytes", 1),
])
def test_build_failures_are_explained(mocker, project, capsys, fixture, expect, code):
    install(mocker).then(fixture, 1)
    assert run_cli(["build", str(project), "--quiet"]) == code
    err = capsys.readouterr().err
    assert err.startswith("deploykit: error: ") and expect in err and "Traceback" not in err
    assert str(project / "build.log") in err
    assert not (project / "build.json").exists()


@pytest.mark.parametrize("platformio_home_exists", [False, True])
def test_offline_build_is_the_rig_whether_or_not_platformio_ran_before(mocker, project, capsys, tmp_path,
                                                                       monkeypatch, platformio_home_exists):
    """The same offline condition gave 2 on a fresh machine and 1 once ~/.platformio existed."""
    home = tmp_path / "home"
    (home / ".platformio" if platformio_home_exists else home).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PLATFORMIO_CORE_DIR", raising=False)
    install(mocker).then("build_platform_download_failed.txt", 1)
    assert run_cli(["build", str(project), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "deploykit deploy --port virtual" in err


def test_pio_missing(mocker, project, capsys, tmp_path):
    mocker.patch("deploykit.toolchain.pio.sys.executable", str(tmp_path / "nowhere" / "python"))
    hide_platformio_module(mocker)
    mocker.patch("deploykit.toolchain.pio.shutil.which", return_value=None)
    assert run_cli(["build", str(project), "--quiet"]) == 3
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
