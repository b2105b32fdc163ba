"""Board discovery: pyserial's port list (mocked at that edge) matched to boards/ by USB id."""

from __future__ import annotations

import json

import pytest
from serial.tools.list_ports_common import ListPortInfo

from deploykit.cli import main
from deploykit.errors import BadInput, NoBoardFound
from deploykit.toolchain import devices


def port(device, vid=None, pid=None, serial=None, description="n/a"):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number, info.description = vid, pid, serial, description
    return info


@pytest.fixture
def comports(mocker):
    def set_ports(*ports):
        mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=list(ports))
    return set_ports


def test_known_ports_are_matched_by_vid_pid(comports):
    comports(port("/dev/ttyS0"), port("/dev/ttyACM0", 0x2341, 0x805E, "ABC123", "Nano RP2040 Connect"),
             port("/dev/ttyUSB0", 0x0403, 0x6001))
    found = devices.list_devices(known_only=True)
    assert [(d.port, d.board_ids, d.vid_pid, d.serial_number) for d in found] == [
        ("/dev/ttyACM0", ("nano_rp2040_connect",), "2341:805E", "ABC123")]
    assert len(devices.list_devices()) == 3


def test_find_board_port_returns_the_one_board(comports):
    comports(port("/dev/ttyACM3", 0x2341, 0x805E))
    assert devices.find_board_port() == ("/dev/ttyACM3", "nano_rp2040_connect")
    assert devices.find_board_port("nano_rp2040_connect") == ("/dev/ttyACM3", "nano_rp2040_connect")


def test_find_board_port_none(comports):
    comports(port("/dev/ttyS0"))
    with pytest.raises(NoBoardFound, match="no connected serial port matches a teensy41 board"):
        devices.find_board_port("teensy41")


def test_find_board_port_several(comports):
    comports(port("/dev/ttyACM0", 0x2341, 0x805E), port("/dev/ttyACM1", 0x2341, 0x805E))
    with pytest.raises(BadInput, match="several ports match.*ttyACM0.*ttyACM1"):
        devices.find_board_port()


def test_shared_usb_id_needs_the_board_named(comports):
    comports(port("/dev/ttyACM0", 0x2341, 0x805A))
    with pytest.raises(BadInput, match="could be nano33ble_sense or nano33ble_sense_rev2; pass --board"):
        devices.find_board_port()
    assert devices.find_board_port("nano33ble_sense_rev2") == ("/dev/ttyACM0", "nano33ble_sense_rev2")


def test_cli_devices_json(comports, capsys):
    comports(port("/dev/ttyACM0", 0x16C0, 0x0483, "9999"))
    with pytest.raises(SystemExit) as exit_:
        main(["devices", "--json"])
    assert exit_.value.code == 0
    assert json.loads(capsys.readouterr().out) == [{
        "port": "/dev/ttyACM0", "board_ids": ["teensy41"], "vid_pid": "16C0:0483",
        "serial_number": "9999", "description": "n/a"}]


def test_cli_devices_table_and_empty(comports, capsys):
    comports(port("/dev/ttyACM0", 0x2341, 0x805A, "S1"))
    with pytest.raises(SystemExit):
        main(["devices"])
    out = capsys.readouterr().out
    assert "/dev/ttyACM0" in out and "nano33ble_sense/nano33ble_sense_rev2" in out and "S1" in out
    comports()
    with pytest.raises(SystemExit):
        main(["devices"])
    assert "no known board is connected" in capsys.readouterr().out


def test_one_resolve_target_for_deploy_flash_and_hil(comports):
    """deploy, flash and hil run read `--port` through the same rule: an empty port is bad
    input everywhere (flash once passed "" on to the uploader), and `auto` finds the same board."""
    from deploykit.deploy import choose_target
    from deploykit.firmware.boards import load_board
    from deploykit.toolchain import flash

    comports(port("/dev/ttyACM3", 0x2341, 0x805E))
    board = load_board("nano_rp2040_connect")
    assert devices.resolve_target("auto") == ("/dev/ttyACM3", "nano_rp2040_connect")
    assert flash.resolve_port("auto", board) == ("/dev/ttyACM3", True)
    assert choose_target(None, "auto", "virtual").port == "/dev/ttyACM3"
    assert choose_target("nano_rp2040_connect", "auto", "virtual").port == "/dev/ttyACM3"
    assert devices.resolve_target("socket://h:1", "x") == ("socket://h:1", "x")
    for resolve in (lambda: devices.resolve_target(""), lambda: flash.resolve_port("", board),
                    lambda: choose_target("nano_rp2040_connect", "", "virtual")):
        with pytest.raises(BadInput, match="no --port given"):
            resolve()
