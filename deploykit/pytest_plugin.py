"""pytest plugin `deploykit` (the pytest11 entry point): HIL options and fixtures.

Options (group "deploykit hardware-in-the-loop"), all prefixed `--dk-` so the plugin
coexists with pytest-embedded (which owns bare --port/--baud/--target) and labgrid (--lg-*):
  --dk-manifest PATH  the manifest.json of the model on the device
  --dk-port URL       any pyserial URL (/dev/ttyACM0, rfc2217://, socket://, virtual://...);
                      without it a virtual board is started on a pty for --dk-manifest
  --dk-board ID       the board (boards/ID.toml); default: "virtual" without --dk-port, else
                      the id the device's HELLO announces
  --dk-baud N         line rate (default: the board's)
Knobs of one suite (hil/'s --hil-samples, --dk-max-latency-us, ...) live in that suite's
conftest.py, not here.

Fixtures (session-scoped; a value comes from indirect parametrize, then the command line,
then the default): dk_manifest, dk_board_id, dk_baud, dk_port, dk_session (an open
deploykit.harness.DeviceSession, handshake and model-hash check done), dk_board, and
dk_virtual_board (a factory for extra virtual boards, e.g. with faults). Everything
heavy is imported inside the fixtures: loading this plugin costs nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

GROUP = "deploykit hardware-in-the-loop"
OPTIONS: dict[str, dict[str, Any]] = {
    "--dk-manifest": dict(dest="dk_manifest", default=None, metavar="PATH",
                          help="manifest.json of the model on the device (deploykit convert)"),
    "--dk-port": dict(dest="dk_port", default=None, metavar="URL",
                      help="serial port or pyserial URL of the device; default: start a virtual board"),
    "--dk-board": dict(dest="dk_board", default=None, metavar="ID",
                       help="board id (boards/ID.toml); default: virtual, or what the device announces"),
    "--dk-baud": dict(dest="dk_baud", default=None, type=int, metavar="N",
                      help="line rate (default: the board's)"),
}


def pytest_addoption(parser):
    group = parser.getgroup("deploykit", GROUP)
    for flag, kwargs in OPTIONS.items():
        group.addoption(flag, **kwargs)


def pytest_configure(config):
    config.addinivalue_line("markers", "hardware: needs a connected board (run hil/ with --dk-port)")


def pytest_collection_modifyitems(config, items):
    """Tests that talk to the device are `hardware` when --dk-port names a real board, so
    `-m "not hardware"` runs the rest of a mixed session without the board."""
    port = config.getoption("dk_port")
    if not port or str(port).lower().startswith("virtual://"):
        return
    for item in items:
        if "dk_port" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.hardware)


def _value(request, dest: str):
    """Indirect parametrize first, then the command line."""
    param = getattr(request, "param", None)
    return param if param is not None else request.config.getoption(dest)


@pytest.fixture(scope="session")
def dk_manifest(request):
    """The loaded, hash-verified manifest named by --dk-manifest."""
    path = _value(request, "dk_manifest")
    if not path:
        pytest.skip("no --dk-manifest given: pass the manifest.json of the model to test")
    from deploykit.model.manifest import load
    return load(path)


@pytest.fixture(scope="session")
def dk_board_id(request):
    """--dk-board, or "virtual" when no --dk-port is given, else None (taken from HELLO)."""
    given = _value(request, "dk_board")
    if given:
        return given
    return None if request.config.getoption("dk_port") else "virtual"


@pytest.fixture(scope="session")
def dk_baud(request, dk_board_id):
    given = _value(request, "dk_baud")
    if given:
        return int(given)
    if dk_board_id:
        from deploykit.firmware.boards import load_board
        return load_board(dk_board_id).baud
    return 115200


@pytest.fixture(scope="session")
def dk_virtual_board():
    """Factory: dk_virtual_board(manifest, **VirtualBoard options) -> pty path, stopped at the end."""
    from deploykit.virtual_board import VirtualBoard
    with contextlib.ExitStack() as stack:
        yield lambda manifest, **options: stack.enter_context(VirtualBoard(manifest, **options))


@pytest.fixture(scope="session")
def dk_port(request, dk_manifest, dk_board_id, dk_baud, dk_virtual_board):
    """--dk-port, or a virtual board on a pty for dk_manifest and dk_board_id."""
    given = _value(request, "dk_port")
    if given:
        return given
    return dk_virtual_board(dk_manifest, board=dk_board_id, baud=dk_baud)


@pytest.fixture(scope="session")
def dk_session(dk_port, dk_baud, dk_manifest):
    """An open DeviceSession: handshake done, model hash checked against the manifest."""
    from deploykit.harness import DeviceSession
    with DeviceSession(dk_port, dk_baud, expected_sha256=dk_manifest.sha256) as session:
        yield session


@pytest.fixture(scope="session")
def dk_board(dk_board_id, dk_session):
    """The Board: --dk-board, or the one the device's HELLO names."""
    from deploykit.firmware.boards import load_board
    return load_board(dk_board_id or dk_session.hello.board_id)
