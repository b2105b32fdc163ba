"""deploykit/toolchain/pio.py against real PlatformIO output captured on this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_pio_fakes import captured, hide_platformio_module, install

from deploykit.errors import BadInput, ToolError
from deploykit.toolchain import pio

PROJECT_INI = """\
[env:nano33ble_sense]
platform = nordicnrf52
board = nano33ble
framework = arduino
"""


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "platformio.ini").write_text(PROJECT_INI)
    return tmp_path


def test_find_pio_prefers_the_one_beside_python():
    argv = pio.find_pio()
    assert Path(argv[0]).name in ("pio", "python", Path(sys.executable).name, "platformio")


def test_find_pio_missing_says_how_to_install(mocker, tmp_path):
    mocker.patch.object(pio.sys, "executable", str(tmp_path / "python"))
    hide_platformio_module(mocker)
    mocker.patch("deploykit.toolchain.pio.shutil.which", return_value=None)
    with pytest.raises(pio.PioMissing, match="pip install platformio"):
        pio.find_pio()


def test_pio_that_cannot_start_is_missing(mocker, project):
    mocker.patch("deploykit.toolchain.pio.subprocess.Popen", side_effect=FileNotFoundError(2, "No such file"))
    with pytest.raises(pio.PioMissing, match="pip install platformio"):
        pio.build(project, "nano33ble_sense", project / "build.log")


def test_interpreter_without_the_module_is_missing(mocker, project):
    install(mocker).then("pio_missing_module.txt", 1)
    with pytest.raises(pio.PioMissing, match="not installed"):
        pio.build(project, "nano33ble_sense", project / "build.log")


def test_success_records_sizes_and_log(mocker, project):
    fake = install(mocker).then("build_success.txt", 0)
    seen = []
    sizes, run = pio.build(project, "nano33ble_sense", project / "build.log", on_line=seen.append)
    assert sizes == pio.Sizes(ram_used=49172, ram_total=262144, flash_used=2556, flash_total=983040)
    assert fake.calls[0][-5:] == ["run", "-e", "nano33ble_sense", "-d", str(project)]
    assert (project / "build.log").read_text() == captured("build_success.txt")
    assert any(line.startswith("RAM:") for line in seen)


def test_parse_sizes_reads_platformio_format_lines():
    text = ("RAM:   [==        ]  15.2% (used 49780 bytes from 327680 bytes)\n"
            "Flash: [===       ]  25.0% (used 262144 bytes from 1048576 bytes)\n")
    assert pio.parse_sizes(text) == pio.Sizes(49780, 327680, 262144, 1048576)
    assert pio.parse_sizes("no size report here") is None


def test_platform_download_offline_names_the_package(mocker, project, monkeypatch):
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(key, raising=False)
    install(mocker).then("build_platform_download_failed.txt", 1)
    with pytest.raises(pio.DownloadFailed) as err:
        pio.build(project, "nano33ble_sense", project / "build.log")
    assert err.value.package == "nordicnrf52"
    assert "platform nordicnrf52" in str(err.value) and "offline" in str(err.value)
    assert str(project / "build.log") in str(err.value)


def test_download_behind_a_proxy_says_so(mocker, project, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    install(mocker).then("build_platform_download_failed.txt", 1)
    with pytest.raises(pio.DownloadFailed, match="proxy HTTPS_PROXY=http://proxy.example:3128"):
        pio.build(project, "nano33ble_sense", project / "build.log")


@pytest.mark.parametrize("fixture, package", [
    ("build_library_git_failed.txt", "git+https://github.com/spaziochirale/Chirale_TensorFlowLite.git#46da2f9"),
    ("build_library_registry_failed.txt", "tanakamasayuki/TensorFlowLite_ESP32 @ ^1.0.0"),
])
def test_library_download_failure_names_the_library(mocker, project, fixture, package):
    install(mocker).then(fixture, 1)
    with pytest.raises(pio.DownloadFailed) as err:
        pio.build(project, "nano33ble_sense", project / "build.log")
    assert err.value.package.startswith(package)
    assert "library" in str(err.value)


def test_compile_error_shows_first_errors_and_log(mocker, project):
    install(mocker).then("build_compile_error.txt", 1)
    with pytest.raises(pio.CompileError) as err:
        pio.build(project, "nano33ble_sense", project / "build.log")
    assert err.value.errors[0] == "src/main.cpp:3:8: error: 'tflite' does not name a type"
    assert "undeclared_arena_size" in err.value.errors[1]
    assert str(project / "build.log") in str(err.value)


@pytest.mark.parametrize("fixture, region, by", [
    ("build_ram_overflow.txt", "RAM", 37888),
    ("build_flash_overflow.txt", "flash", 117044),
    ("build_program_size_error.txt", "flash", 2556 - 2048),
])
def test_linker_overflow_says_by_how_much(mocker, project, fixture, region, by):
    install(mocker).then(fixture, 1)
    with pytest.raises(pio.Overflow) as err:
        pio.build(project, "nano33ble_sense", project / "build.log")
    assert (err.value.region, err.value.by_bytes) == (region, by)
    assert f"{region} overflowed by {by} bytes" in str(err.value)


def test_ram_over_board_maximum_is_refused_although_platformio_only_warns(mocker, project):
    install(mocker).then("build_ram_over_board_max.txt", 0)
    with pytest.raises(pio.Overflow) as err:
        pio.build(project, "nano33ble_sense", project / "build.log")
    assert (err.value.region, err.value.by_bytes) == ("RAM", 49172 - 32768)


def test_section_that_will_not_fit_without_a_figure():
    run = pio.PioRun([], 1, "ld: x.elf section `.bss' will not fit in region `RAM'\n", Path("b.log"))
    err = pio.build_failure(run)
    assert isinstance(err, pio.Overflow) and err.region == "RAM" and "no figure" in str(err)


def test_unknown_failure_shows_the_tail(mocker, project):
    run = pio.PioRun([], 3, "Processing x\nsomething odd happened\n", project / "build.log")
    err = pio.build_failure(run)
    assert type(err) is ToolError and "something odd happened" in str(err) and "exit 3" in str(err)


def test_choose_env_uses_platformio_parser(project):
    assert pio.project_envs(project) == ["nano33ble_sense"]
    assert pio.choose_env(project, None) == "nano33ble_sense"
    with pytest.raises(BadInput, match="no env 'esp32'"):
        pio.choose_env(project, "esp32")


def test_choose_env_refuses_a_directory_without_a_project(tmp_path):
    with pytest.raises(BadInput, match="not a PlatformIO project"):
        pio.choose_env(tmp_path, None)


def test_timeout_kills_a_silent_pio(mocker, project):
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                            stdout=subprocess.PIPE, text=True)
    mocker.patch("deploykit.toolchain.pio.subprocess.Popen", return_value=proc)
    with pytest.raises(ToolError, match="longer than 0 s"):
        pio.run(["run"], project / "build.log", timeout=0.3)


def test_an_interrupt_stops_platformio_instead_of_leaving_it_running(mocker, tmp_path):
    """Ctrl-C / SIGTERM (a KeyboardInterrupt, see cli.py) during a build: before, Popen's exit
    let the interrupt through and left PlatformIO building on its own; now it is killed."""
    import os
    import sys
    import time
    slow = "import os, time; print('Processing env', os.getpid(), flush=True); time.sleep(30)"
    mocker.patch("deploykit.toolchain.pio.find_pio", return_value=[sys.executable, "-c", slow])

    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pio.run(["run"], tmp_path / "build.log", on_line=interrupt)
    pid = int((tmp_path / "build.log").read_text().split()[-1])  # the log is kept
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.05)
    running = _running(pid)
    if running:
        os.kill(pid, 9)
    assert not running


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status
