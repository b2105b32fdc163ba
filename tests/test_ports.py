"""deploykit.link.ports: open failures give one clear line each (pyserial faked at the edge)."""

import errno
import os

import pytest
import serial

from deploykit.errors import BadInput, DeviceError
from deploykit.link import ports


def _raise(code, text):
    def fake(*args, **kwargs):
        raise serial.SerialException(code, text)
    return fake


def test_missing_port_is_bad_input_naming_it():
    with pytest.raises(BadInput) as info:
        ports.open_port("/dev/ttyDOES_NOT_EXIST", 115200)
    msg = str(info.value)
    assert "/dev/ttyDOES_NOT_EXIST does not exist" in msg and "\n" not in msg


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_plain_file_or_directory_is_not_a_port(tmp_path, kind):
    path = tmp_path / "x"
    path.mkdir() if kind == "directory" else path.write_text("not a tty")
    with pytest.raises(BadInput) as info:
        ports.open_port(str(path), 115200)
    assert f"{path} is not a serial port" in str(info.value) and "\n" not in str(info.value)


def test_permission_denied_names_dialout_and_udev(mocker):
    mocker.patch.object(serial, "serial_for_url",
                        _raise(errno.EACCES, "could not open port /dev/ttyACM0: [Errno 13] Permission denied"))
    with pytest.raises(DeviceError) as info:
        ports.open_port("/dev/ttyACM0")
    msg = str(info.value)
    assert "permission denied" in msg and "dialout" in msg and "udev" in msg and "\n" not in msg


def test_busy_port_from_ebusy(mocker):
    mocker.patch.object(serial, "serial_for_url",
                        _raise(errno.EBUSY, "could not open port /dev/ttyACM0: [Errno 16] Device or resource busy"))
    with pytest.raises(DeviceError, match="busy"):
        ports.open_port("/dev/ttyACM0")


def test_busy_port_real_exclusive_lock_on_a_pty():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    first = ports.open_port(path)
    try:
        with pytest.raises(DeviceError) as info:
            ports.open_port(path)
        assert "is busy" in str(info.value) and "\n" not in str(info.value)
    finally:
        first.close()
        os.close(master)
        os.close(slave)


def test_unknown_url_scheme_is_bad_input():
    with pytest.raises(BadInput, match="bogus://x"):
        ports.open_port("bogus://x")


def test_other_errors_keep_pyserial_text(mocker):
    mocker.patch.object(serial, "serial_for_url", _raise(errno.EIO, "could not open port X: I/O error"))
    with pytest.raises(DeviceError, match="cannot open serial port X"):
        ports.open_port("X")


def test_loop_url_opens_and_echoes():
    port = ports.open_port("loop://", 9600, timeout=0.5)
    port.write(b"abc")
    assert port.read(3) == b"abc"
    port.close()


def test_handler_package_registered_once():
    import importlib
    importlib.reload(ports)
    assert serial.protocol_handler_packages.count("deploykit.link.serial_handlers") == 1
