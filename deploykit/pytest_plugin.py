"""pytest plugin `deploykit` (the pytest11 entry point): HIL options and fixtures.

Options (group "deploykit hardware-in-the-loop"), all prefixed `--dk-` so the plugin
coexists with pytest-embedded (which owns bare --port/--baud/--target) and labgrid (--lg-*):
  --dk-manifest PATH  the manifest.json of the model on the device
  --dk-port URL       any pyserial URL (/dev/ttyACM0, rfc2217://, socket://, virtual://...);
                      without it a virtual board is started on a pty for --dk-manifest
  --dk-board ID       the board (boards/ID.toml); default: "virtual" without --dk-port, else
                      the id the device's HELLO announces
  --dk-baud N         line rate (default: the board's)
  --dk-place NAME     a labgrid place to run on (repeatable): under pytest-xdist worker gwN
                      takes place N (modulo), else the first; acquired for the session,
                      released at its end however it ends; its board kind is its tag board=ID
  --dk-coordinator A  the labgrid coordinator (default: LG_COORDINATOR, else labgrid's)
Knobs of one suite (hil/'s --hil-samples, --dk-max-latency-us, ...) live in that suite's
conftest.py, not here.

Fixtures (session-scoped; a value comes from indirect parametrize, then the command line,
then the default): dk_manifest, dk_place (the labgrid Lease, or None), dk_board_id, dk_baud,
dk_port, dk_session (an open deploykit.harness.DeviceSession, handshake and model-hash
check done), dk_board, and
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
    "--dk-place": dict(dest="dk_place", action="append", default=[], metavar="NAME",
                       help="labgrid place to run on (repeatable; pytest-xdist worker gwN takes place N)"),
    "--dk-coordinator": dict(dest="dk_coordinator", default=None, metavar="ADDR",
                             help="labgrid coordinator (default: LG_COORDINATOR, else labgrid's default)"),
}


def pytest_addoption(parser):
    group = parser.getgroup("deploykit", GROUP)
    for flag, kwargs in OPTIONS.items():
        group.addoption(flag, **kwargs)


def pytest_configure(config):
    config.addinivalue_line("markers", "hardware: needs a connected board (run hil/ with --dk-port)")
    places = config.getoption("dk_place")
    if not places:
        return
    if config.getoption("dk_port"):
        raise pytest.UsageError("--dk-place and --dk-port exclude each other: a place brings its own port")
    workers = _worker_count(config)
    if workers > len(places):
        raise pytest.UsageError(f"{workers} pytest-xdist workers but {len(places)} --dk-place: "
                                "give one place per worker, or fewer workers (-n)")


def _worker_count(config) -> int:
    """pytest-xdist's worker count (on a worker or the controller); 1 without xdist."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return int(workerinput.get("workercount", 1))
    count = getattr(config.option, "numprocesses", None)
    return count if isinstance(count, int) and count > 0 else 1


def place_of(config) -> str | None:
    """This process's --dk-place: worker gwN takes place N (modulo), one process the first."""
    places = config.getoption("dk_place")
    if not places:
        return None
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    return places[int(worker.removeprefix("gw") or 0) % len(places)]


def pytest_runtest_setup(item):
    """Name the place a test ran on in its report (user_properties travel back from xdist workers)."""
    place = place_of(item.config)
    if place and ("dk_place", place) not in item.user_properties:
        item.user_properties.append(("dk_place", place))


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
def dk_place(request):
    """The labgrid Lease of this process's --dk-place (None without one): acquired for the
    session, released at its end, on failure and on interrupt (Ctrl-C, SIGTERM, SIGHUP)."""
    name = place_of(request.config)
    if name is None:
        yield None
        return
    from deploykit.link.labgrid_place import place_lease
    with place_lease(name, request.config.getoption("dk_board"), request.config.getoption("dk_coordinator")) as lease:
        yield lease


@pytest.fixture(scope="session")
def dk_board_id(request, dk_place):
    """--dk-board, else the place's tag board=ID, else "virtual" when no port is given, else
    None (taken from HELLO)."""
    given = _value(request, "dk_board")
    if given:
        return given
    if dk_place is not None:
        return dk_place.board
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
def dk_port(request, dk_manifest, dk_place, dk_board_id, dk_baud, dk_virtual_board):
    """--dk-port, or the --dk-place's serial URL, or a virtual board on a pty for dk_manifest."""
    given = _value(request, "dk_port")
    if given:
        return given
    if dk_place is not None:
        return dk_place.url
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
