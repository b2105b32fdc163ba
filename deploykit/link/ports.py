"""The one module that opens serial ports.

Every `--port` in deploykit is a pyserial URL: a device path (/dev/ttyACM0), rfc2217://,
socket://, loop://, or virtual://MANIFEST (the virtual board, see
deploykit/link/serial_handlers/protocol_virtual.py, registered here on import). Open failures
become one line that names the port and the fix: a missing port and an unknown URL are
the user's input (BadInput), permission denied and a busy port are the machine's state
(DeviceError).

RFC 2217 (`rfc2217://host:port`, e.g. a labgrid exporter's ser2net): pyserial waits for the
server to confirm every modem-control change, and ser2net never confirms one for a port
without modem lines (a pty, such as the virtual board's), so opening failed with "timeout
while waiting for option 'control'". open_port() therefore adds pyserial's
`ign_set_control` option to every rfc2217 URL; pulse_reset() then looks at whether the
server confirmed the DTR pulse and, when it did not, resets with the 1200-baud touch,
which ser2net does pass on (it sets the line rate of the port behind it).
"""

from __future__ import annotations

import errno
import time
from urllib.parse import parse_qs, urlsplit

import serial

from deploykit.errors import BadInput, DeviceError

HANDLER_PACKAGE = "deploykit.link.serial_handlers"
if HANDLER_PACKAGE not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append(HANDLER_PACKAGE)

_BUSY = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}


def open_port(url: str, baud: int = 115200, timeout: float | None = 1.0):
    """Open `url` as a serial.Serial-like object (exclusive on POSIX), or raise one line."""
    try:
        return serial.serial_for_url(network_url(url), baudrate=baud, timeout=timeout, exclusive=True)
    except serial.SerialException as exc:
        raise _explain(url, exc) from exc
    except ValueError as exc:  # unknown URL scheme, bad baud rate, bad URL options
        raise BadInput(f"port {url!r} is not usable: {_first_line(exc)}; give a device path "
                       "or a pyserial URL (rfc2217://, socket://, virtual://MANIFEST)") from exc


def reopen_port(port, url: str):
    """Open a closed port object again (the same board after a re-plug, for a virtual:// port);
    failures as open_port's."""
    try:
        port.open()
    except serial.SerialException as exc:
        raise _explain(url, exc) from exc
    except ValueError as exc:
        raise BadInput(f"port {url!r} is not usable: {_first_line(exc)}") from exc
    return port


def network_url(url: str) -> str:
    """`url` as pyserial should open it: rfc2217:// URLs get `ign_set_control` (module docstring)."""
    if not url.lower().startswith("rfc2217://"):
        return url
    if "ign_set_control" in parse_qs(urlsplit(url).query, keep_blank_values=True):
        return url
    return url + ("&" if "?" in url else "?") + "ign_set_control"


def network_serial_url(host: str, port: int, protocol: str = "rfc2217") -> str:
    """The pyserial URL of a network serial port (labgrid's NetworkSerialPort: rfc2217 or raw)."""
    if protocol not in ("rfc2217", "raw"):
        raise BadInput(f"network serial port {host}:{port} speaks {protocol!r}; deploykit speaks rfc2217 and raw")
    return f"{'rfc2217' if protocol == 'rfc2217' else 'socket'}://{host}:{int(port)}"


def pulse_reset(port, pulse: float = 0.1) -> None:
    """Reset the board on `port`: a DTR pulse; where the port has no DTR (a pty, e.g. the
    virtual board's), the Arduino 1200-baud touch the virtual board takes as its DTR."""
    try:
        port.dtr = False
        time.sleep(pulse)
        port.dtr = True
        if _dtr_confirmed(port):
            return
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):
            raise DeviceError(f"cannot reset the board on {port.port}: {exc}") from exc
    speed = port.baudrate
    port.baudrate = 1200
    time.sleep(pulse)
    port.baudrate = speed


def _dtr_confirmed(port) -> bool:
    """False for an RFC 2217 server that did not confirm the DTR change (no modem lines)."""
    options = getattr(port, "_rfc2217_options", None)
    if not options or "control" not in options:
        return True
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            if options["control"].is_ready():
                return True
        except ValueError:  # the server answered with another value: refused
            return False
        time.sleep(0.02)
    return False


def _explain(url: str, exc: serial.SerialException) -> Exception:
    """Turn pyserial's open error into one line naming the port and what to do."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
        return BadInput(f"serial port {url} does not exist; plug the board in and check "
                        f"`deploykit devices`, or pass --port with a port it lists")
    if code in (errno.EISDIR, errno.ENOTTY) or "Inappropriate ioctl" in text:
        return BadInput(f"{url} is not a serial port (a directory or a plain file); give the board's "
                        "device (see `deploykit devices`) or a pyserial URL")
    if code in (errno.EACCES, errno.EPERM):
        return DeviceError(f"permission denied opening {url}; add yourself to the dialout group "
                           "(`sudo usermod -aG dialout $USER`, then log in again) or install "
                           "the board's udev rule")
    if code in _BUSY or "exclusively lock" in text:
        return DeviceError(f"serial port {url} is busy: another program (a serial monitor, "
                           "another deploykit run, ModemManager) has it open; close it and retry")
    return DeviceError(f"cannot open serial port {url}: {_first_line(exc)}; check that the device "
                       "(or the serial server of a network URL) is up and the port is right")


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
