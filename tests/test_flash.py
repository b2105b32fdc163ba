"""`deploykit flash` and a whole mocked build + flash.

PlatformIO is replayed from captured output (tests/fixtures/pio/) and pyserial's port list
is scripted (the USB re-enumeration); the flashed board is the virtual board on a real pty,
so the handshake and the model-hash check after the upload are real.
"""

from __future__ import annotations

import errno
import json
import os

import pytest
import serial
from conftest import run_cli
from serial.tools.list_ports_common import ListPortInfo
from test_pio_fakes import install

from deploykit.firmware.render import render
from deploykit.link.session import StaleFirmware
from deploykit.toolchain import flash, pio
from deploykit.virtual_board import VirtualBoard

BOARD = "nano33ble_sense"
NANO_USB = (0x2341, 0x805A)


def usb_port(path, vid_pid=NANO_USB):
    info = ListPortInfo(path, skip_link_detection=True)
    info.vid, info.pid = vid_pid
    info.serial_number = "E1D2C3"
    return info


class Bus:
    """The USB bus as pyserial lists it; the upload makes the board drop off for a while."""

    def __init__(self, *ports):
        self.ports = list(ports)
        self.gone_polls = 0

    def comports(self):
        if self.gone_polls:
            self.gone_polls -= 1
            return []
        return list(self.ports)

    def reenumerate(self, *new_ports, gone_polls=3):
        def hook():
            self.ports = list(new_ports)
            self.gone_polls = gone_polls
        return hook


@pytest.fixture
def bus(mocker):
    b = Bus()
    mocker.patch("deploykit.toolchain.devices.list_ports.comports", side_effect=b.comports)
    return b


@pytest.fixture(scope="module")
def project(sine_manifest, tmp_path_factory):
    """The sine model rendered for a Nano 33 BLE Sense (the real render stage)."""
    return render(sine_manifest.path, BOARD, tmp_path_factory.mktemp("fw") / "sine_nano")


@pytest.fixture
def spare_pty():
    """A real pty that answers nothing: the board's port before it re-enumerates."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_mocked_build_then_flash_reaches_a_verified_handshake(mocker, bus, project, sine_manifest):
    with VirtualBoard(sine_manifest.path, board=BOARD) as port:
        bus.ports = [usb_port(port)]
        fake = install(mocker).then("build_success.txt", 0)
        fake.then("upload_success_disk.txt", 0, on_exit=bus.reenumerate(usb_port(port), gone_polls=5))
        built = pio.build_project(project)
        result = flash.flash(project, port="auto", manifest=sine_manifest.path, wait_s=10)
    assert built.sizes.ram_used == 49172 and built.sizes.flash_used == 2556
    assert json.loads((project / "build.json").read_text())["sizes"]["ram_total"] == 262144
    assert fake.calls[1][-9:] == ["run", "-e", BOARD, "-t", "upload", "--upload-port", port, "-d", str(project)]
    assert result.port == port and result.board_id == BOARD
    assert result.hello["model_sha256"] == sine_manifest.sha256
    assert result.hello["simulated"] is True and result.hello["arena_used"] > 0
    assert (project / "upload.log").read_text().endswith("[SUCCESS] Took 1.55 seconds =========================\n")


def test_board_that_comes_back_under_a_new_name(mocker, bus, project, sine_manifest, spare_pty):
    with VirtualBoard(sine_manifest.path, board=BOARD) as new_port:
        bus.ports = [usb_port(spare_pty)]
        install(mocker).then("upload_success_disk.txt", 0, on_exit=bus.reenumerate(usb_port(new_port)))
        result = flash.flash(project, port="auto", wait_s=10)
    assert result.port == new_port
    assert result.hello["model_sha256"] == sine_manifest.sha256


def test_cli_flash_prints_the_verified_hash(mocker, bus, project, sine_manifest, capsys):
    with VirtualBoard(sine_manifest.path, board=BOARD) as port:
        install(mocker).then("upload_success_disk.txt", 0)
        assert run_cli(["flash", str(project), "--port", port, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"model sha256 {sine_manifest.sha256[:16]}… verified" in out and port in out


def test_stale_firmware_is_refused(mocker, bus, project, converted_examples):
    linear = converted_examples["linear"]
    with VirtualBoard(linear.path, board=BOARD) as port:
        install(mocker).then("upload_success_disk.txt", 0)
        with pytest.raises(StaleFirmware) as err:
            flash.flash(project, port=port, wait_s=5)
    assert linear.sha256 in str(err.value)


@pytest.mark.parametrize("fixture, error, words", [
    ("upload_esptool_busy.txt", pio.PortBusy, "is busy"),
    ("upload_esptool_permission.txt", pio.PortPermission, "dialout"),
    ("upload_port_not_found.txt", pio.NoBoard, "no board answered"),
    ("upload_bossac_no_device.txt", pio.NoBoard, "no board answered"),
])
def test_upload_failures_from_captured_output(mocker, bus, project, spare_pty, fixture, error, words):
    install(mocker).then(fixture, 1)
    with pytest.raises(error, match=words):
        flash.flash(project, port=spare_pty, wait_s=1)


def test_upload_that_had_to_build_first_reports_the_build_failure(mocker, bus, project, spare_pty):
    install(mocker).then("build_compile_error.txt", 1)
    with pytest.raises(pio.CompileError):
        flash.flash(project, port=spare_pty, wait_s=1)


@pytest.mark.parametrize("code, words", [(errno.EBUSY, "is busy"), (errno.EACCES, "dialout group")])
def test_port_checked_before_upload(mocker, bus, project, spare_pty, capsys, code, words):
    mocker.patch("deploykit.link.ports.serial.serial_for_url",
                 side_effect=serial.SerialException(code, f"could not open port {spare_pty}"))
    popen = mocker.patch("deploykit.toolchain.pio.subprocess.Popen")
    assert run_cli(["flash", str(project), "--port", spare_pty, "--quiet"]) == 3  # the rig
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    popen.assert_not_called()


def test_no_board_connected_is_the_rig(mocker, bus, project, capsys):
    popen = mocker.patch("deploykit.toolchain.pio.subprocess.Popen")
    before = sorted(p.name for p in project.iterdir())
    assert run_cli(["flash", str(project), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "no connected serial port matches a nano33ble_sense board" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in project.iterdir()) == before
    popen.assert_not_called()


@pytest.mark.parametrize("wait", ["0", "-1"])
def test_wait_must_be_positive(mocker, project, capsys, wait):
    popen = mocker.patch("deploykit.toolchain.pio.subprocess.Popen")
    assert run_cli(["flash", str(project), "--wait", wait, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--wait {float(wait)} must be a positive" in err and len(err.strip().splitlines()) == 1
    popen.assert_not_called()


def test_board_that_never_comes_back(mocker, bus, project, spare_pty):
    bus.ports = [usb_port(spare_pty)]
    install(mocker).then("upload_success_disk.txt", 0, on_exit=bus.reenumerate())
    with pytest.raises(flash.DeviceError, match="did not come back after the upload within 1 s"):
        flash.flash(project, port="auto", wait_s=1)
