"""Places on a labgrid coordinator: acquire one, find its serial port, release it.

A labgrid farm (labgrid 24+, gRPC) has a coordinator, exporters on the hosts next to the
boards (each republishing a serial port through ser2net as a NetworkSerialPort), and
places that people acquire and release. deploykit schedules nothing itself: it acquires
the places it is given, opens their ports as rfc2217:// (or socket://) URLs through
deploykit.link.ports, and releases them however the run ends.

- A place's board kind is its tag `board=ID` (`labgrid-client -p P set-tags board=esp32dev`).
- A place acquired by another user (or host) is theirs: one line, exit 3.
- A place still acquired by this user and host after a killed run (SIGKILL) is taken back:
  a run holds a lock file (flock, freed by the kernel when the process dies) for every
  place it holds, so a live run of ours is told apart from a dead one.

labgrid is imported lazily: `pip install deploykit[farm]` brings it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from deploykit.errors import BadInput, RigError

DEFAULT_COORDINATOR = "127.0.0.1:20408"
SERIAL_CLASSES = ("NetworkSerialPort",)
ANSWER_WITHIN = 10.0      # seconds the coordinator has to answer a request
PORT_WITHIN = 10.0        # seconds an exporter has to publish the port of an acquired place


def coordinator_address(given: str | None = None) -> str:
    """--coordinator, else labgrid's own LG_COORDINATOR, else labgrid's default."""
    return given or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def _labgrid():
    # gRPC's fork handlers log a line whenever the run forks a child (references, toolchains)
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    root = logging.getLogger()
    if not root.handlers:  # labgrid logs to the root logger; deploykit reports errors as one line
        root.addHandler(logging.NullHandler())
    try:
        import grpc  # noqa: F401 - labgrid's transport
        from labgrid.remote import client
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
    except ImportError as exc:
        raise BadInput(f"labgrid is not installed ({exc.name} is missing); "
                       "`pip install deploykit[farm]` to run on labgrid places") from exc
    return client, pb2


@dataclass
class Lease:
    """An acquired place: its name, board kind (tag), serial URL and the lock that marks it ours."""

    name: str
    board: str | None
    url: str
    tags: dict = field(default_factory=dict)
    lock: IO[str] | None = None


class CoordinatorClient:
    """A connection to a labgrid coordinator, its event loop in a thread of its own."""

    def __init__(self, address: str | None = None):
        self.address = coordinator_address(address)
        self._client, self._pb2 = _labgrid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labgrid", daemon=True)
        self._thread.start()
        self.session = None
        try:
            self.session = self._call(self._start(), "connect")
        except BaseException:
            self.close()
            raise

    # ----- plumbing ------------------------------------------------------------------
    async def _start(self):
        from labgrid.util.proxy import proxymanager
        address = proxymanager.get_grpc_address(self.address, default_port=20408)
        session = self._client.ClientSession(address, self._loop)
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        return session

    def _call(self, coro, what: str):
        """Run `coro` on the coordinator's loop; a silent or failing coordinator is a rig failure."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(ANSWER_WITHIN)
        except TimeoutError:
            future.cancel()
            raise RigError(f"the labgrid coordinator at {self.address} did not answer within "
                           f"{ANSWER_WITHIN:.0f} s ({what}); check it runs (`labgrid-coordinator`) and "
                           "--coordinator or LG_COORDINATOR") from None
        except self._client.Error as exc:
            text = _one_line(exc).removeprefix("Error: ")
            raise RigError(f"labgrid coordinator at {self.address}: {what} failed ({text}); "
                           "check it runs and --coordinator or LG_COORDINATOR") from exc
        except Exception as exc:  # grpc.aio.AioRpcError and friends
            details = getattr(exc, "details", None)
            text = details() if callable(details) else _one_line(exc)
            raise RigError(f"labgrid coordinator at {self.address}: {what} failed: {text}") from exc

    def sync(self) -> None:
        if not self._call(self._session.sync_with_coordinator(), "sync"):
            raise RigError(f"lost the labgrid coordinator at {self.address}; check it still runs")

    def close(self) -> None:
        """Disconnect and stop the loop thread."""
        if self.session is not None:
            session, self.session = self.session, None
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_stop(session), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def _session(self):
        """The live ClientSession; once closed, a call is a rig failure, not an AttributeError."""
        if self.session is None:
            raise RigError(f"the connection to the labgrid coordinator at {self.address} is closed")
        return self.session

    # ----- places --------------------------------------------------------------------
    @property
    def me(self) -> str:
        return f"{self._session.gethostname()}/{self._session.getuser()}"

    def place(self, name: str):
        """The place called `name` (or with that alias); BadInput naming the places there."""
        self.sync()
        places = self._session.places
        found = places.get(name) or next((p for p in places.values() if name in p.aliases), None)
        if found is None:
            known = ", ".join(sorted(places)) or "none"
            raise BadInput(f"no place {name!r} on the labgrid coordinator at {self.address} (places: {known}); "
                           f"create it with `labgrid-client -p {name} create`, or check --place")
        return found

    def matching(self, tags: dict) -> list[str]:
        """Names of the places carrying every tag in `tags` (e.g. {"board": "esp32dev"})."""
        self.sync()
        return sorted(n for n, p in self._session.places.items()
                      if all(p.tags.get(k) == v for k, v in tags.items()))

    def serial_resources(self, place) -> list[tuple]:
        """(path, ResourceEntry) of every serial port resource the place matches."""
        found = []
        for exporter, groups in self._session.resources.items():
            for group, resources in groups.items():
                for name, entry in resources.items():
                    path = (exporter, group, entry.cls, name)
                    if entry.cls in SERIAL_CLASSES and place.getmatch(path) is not None:
                        found.append((path, entry))
        return found

    def acquire(self, name: str, board: str | None = None) -> Lease:
        """Acquire place `name` for this run and return its serial URL; see the module docstring."""
        place = self.place(name)
        tag = place.tags.get("board")
        if board and tag and tag != board:
            raise BadInput(f"place {name} is tagged board={tag}, not {board}; pass --board {tag} or another place")
        if not self.serial_resources(place):
            raise BadInput(f"place {name} has no serial port (no NetworkSerialPort matches it); add one with "
                           f"`labgrid-client -p {name} add-match EXPORTER/GROUP/NetworkSerialPort`")
        lock = _own_lock(self.address, place.name)
        try:
            self._take(place)
            try:
                url = self._serial_url(place.name)
            except BaseException:
                self._release(place.name)
                raise
        except BaseException:
            lock.close()
            raise
        return Lease(place.name, tag or board, url, dict(place.tags), lock)

    def _take(self, place) -> None:
        """Acquire; a place this user and host still hold from a killed run is released first."""
        if place.acquired:
            if place.acquired != self.me:
                raise RigError(f"place {place.name} is acquired by {place.acquired}; wait until it is "
                               f"released, or ask its user to run `labgrid-client -p {place.name} release`")
            self._release(place.name)   # ours, and our lock was free: a dead run's, taken back
        request = self._pb2.AcquirePlaceRequest(placename=place.name)
        self._call(_rpc(self._session.stub.AcquirePlace, request), f"acquire place {place.name}")
        self.sync()

    def _serial_url(self, name: str) -> str:
        """The acquired place's serial port as a pyserial URL (its exporter may take a moment)."""
        from deploykit.link.ports import network_serial_url
        deadline = time.monotonic() + PORT_WITHIN
        while True:
            place = self._session.places[name]
            ready = [e for path, e in self.serial_resources(place)
                     if path in [tuple(p) for p in place.acquired_resources] and e.avail and e.params.get("port")]
            if ready:
                entry = ready[0]
                if (entry.extra or {}).get("proxy_required"):
                    raise RigError(f"place {name}'s serial port is reachable only through an SSH proxy "
                                   f"({entry.extra.get('proxy')}); deploykit needs it on the network")
                return network_serial_url(entry.params["host"], entry.params["port"],
                                          entry.params.get("protocol", "rfc2217"))
            if time.monotonic() > deadline:
                raise RigError(f"place {name}'s serial port is not available (its exporter is gone?); "
                               f"check `labgrid-client -p {name} show`")
            time.sleep(0.1)
            self.sync()

    def release(self, lease: Lease) -> None:
        """Release the place (if still ours) and drop its lock; never raises for a place already gone."""
        try:
            place = self._session.places.get(lease.name) if self.session else None
            if place is not None and place.acquired == self.me:
                self._release(lease.name)
        finally:
            if lease.lock is not None:
                lease.lock.close()
                lease.lock = None

    def create_place(self, name: str, patterns=(), tags: dict | None = None) -> None:
        """Create a place matching `patterns` (exporter/group/cls[/name]) with `tags` (a farm's setup)."""
        pb2, stub = self._pb2, self._session.stub
        self._call(_rpc(stub.AddPlace, pb2.AddPlaceRequest(name=name)), f"create place {name}")
        for pattern in patterns:
            self._call(_rpc(stub.AddPlaceMatch, pb2.AddPlaceMatchRequest(placename=name, pattern=pattern)),
                       f"add match {pattern} to {name}")
        if tags:
            self._call(_rpc(stub.SetPlaceTags, pb2.SetPlaceTagsRequest(placename=name, tags=tags)),
                       f"tag place {name}")
        self.sync()

    def _release(self, name: str) -> None:
        request = self._pb2.ReleasePlaceRequest(placename=name)
        self._call(_rpc(self._session.stub.ReleasePlace, request), f"release place {name}")
        self.sync()


async def _rpc(method, request):
    """A gRPC call made on the coordinator's loop (grpc.aio calls belong to the loop that makes them)."""
    return await method(request)


async def _stop(session) -> None:
    await session.stop()
    await session.close()


def _own_lock(address: str, place: str) -> IO[str]:
    """Hold a per-user lock file for the place; one live run of ours holds it, a dead one does not."""
    folder = Path(tempfile.gettempdir()) / f"deploykit-{os.getuid()}" / "places"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The open file is the lock: it stays open (held) until the run closes it.
    fh = open(folder / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{address}-{place}.lock"), "a+")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise RigError(f"place {place} is in use by another deploykit run of yours on this host; "
                       "wait for it to end") from None
    return fh


@contextlib.contextmanager
def place_lease(name: str, board: str | None = None, coordinator: str | None = None):
    """Acquire one place for a `with` block; released when it ends, fails or is interrupted."""
    with CoordinatorClient(coordinator) as coord, interrupts_raise():
        lease = coord.acquire(name, board)
        with releasing(coord, [lease]):
            yield lease


@contextlib.contextmanager
def releasing(coord: CoordinatorClient, leases: list):
    """Release `leases` when the block ends; signals wait meanwhile. When the block failed,
    its error is the one reported, not a failure to release (the coordinator gone too)."""
    try:
        yield leases
    except BaseException:
        with interrupts_held(), contextlib.suppress(RigError):
            for lease in leases:
                coord.release(lease)
        raise
    with interrupts_held():
        for lease in leases:
            coord.release(lease)


@contextlib.contextmanager
def interrupts_raise():
    """SIGTERM and SIGHUP raise KeyboardInterrupt (as Ctrl-C does), so `finally` releases places."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_held():
    """Defer Ctrl-C, SIGTERM and SIGHUP while places are released; re-raise after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {sig: signal.signal(sig, lambda s, f: got.append(s)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
