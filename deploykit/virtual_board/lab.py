"""A board farm on this machine: virtual boards behind ser2net, exported through labgrid.

Shared by the tests and benchmarks/farm.py, and usable to try `deploykit farm run` without
hardware. Everything binds 127.0.0.1 and runs in process groups that stop() ends:

    with Host("h1") as host:                        # one "exporter host"
        port = host.add_board(manifest, board="esp32dev")   # pty + ser2net (RFC 2217)
        ...  # rfc2217://127.0.0.1:PORT

A Host is one process group (virtual boards, ser2net, optionally labgrid-exporter), so
kill() takes the whole host away at once, as when an exporter machine goes down.
A Coordinator is `labgrid-coordinator` on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploykit.errors import DeviceError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def ser2net_binary() -> str:
    """ser2net's path (Debian installs it in /usr/sbin, often not on PATH)."""
    found = shutil.which("ser2net") or ("/usr/sbin/ser2net" if os.path.exists("/usr/sbin/ser2net") else None)
    if not found:
        raise DeviceError("ser2net is not installed; `apt-get install ser2net`")
    return found


def ser2net_config(device: str, port: int, speed: int = 115200, rfc2217: bool = True) -> str:
    """A ser2net 4 YAML config serving `device` on 127.0.0.1:port (RFC 2217 or raw TCP)."""
    accepter = f"telnet(rfc2217),tcp,{LOOPBACK},{port}" if rfc2217 else f"tcp,{LOOPBACK},{port}"
    return ("%YAML 1.1\n---\n"
            "connection: &board\n"
            f"  accepter: {accepter}\n"
            f"  connector: serialdev(nouucplock=true),{device},{speed}n81,local\n"
            "  options:\n"
            "    max-connections: 1\n")


def wait_listening(port: int, within: float = 10.0, proc=None) -> None:
    """Block until something accepts on 127.0.0.1:port (poking it once it does)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DeviceError(f"{proc.args[0]} exited ({proc.returncode}) before listening on {port}")
        if _listening(port):
            return
        time.sleep(0.05)
    raise DeviceError(f"nothing listens on {LOOPBACK}:{port} after {within:.0f} s")


def _listening(port: int) -> bool:
    """True when a socket listens on 127.0.0.1:port (read from /proc, no connection made)."""
    wanted = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as fh:
                if any(f[1] in wanted and f[3] == "0A" for f in (line.split() for line in list(fh)[1:])):
                    return True
        return False
    except OSError:
        with socket.socket() as s:
            return s.connect_ex((LOOPBACK, port)) == 0


class Host:
    """One simulated exporter host: a process group of virtual boards, ser2nets, an exporter."""

    def __init__(self, name: str, workdir=None):
        self.name = name
        self._own = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"deploykit-lab-{name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.pgid: int | None = None
        self.boards: list[dict] = []   # {"name", "board", "pty", "port", "ser2net"}

    # ----- processes -------------------------------------------------------------------
    def spawn(self, args, **kwargs) -> subprocess.Popen:
        """Start a process in this host's process group (the first one leads it)."""
        with open(self.dir / f"{len(self.procs)}-{Path(args[0]).name}.log", "wb") as log:
            proc = subprocess.Popen(args, stdout=kwargs.pop("stdout", log), stderr=log, stdin=subprocess.DEVNULL,
                                    process_group=0 if self.pgid is None else self.pgid, **kwargs)
        if self.pgid is None:
            self.pgid = proc.pid
        self.procs.append(proc)
        return proc

    def add_board(self, manifest, board: str = "virtual", **options) -> int:
        """Serve a virtual board on a pty behind ser2net; return the TCP port."""
        return self.add_boards(manifest, 1, board, **options)[0]

    def add_boards(self, manifest, count: int, board: str = "virtual", baud: int | None = None,
                   pacing: bool = True, rfc2217: bool = True) -> list[int]:
        """Serve `count` virtual boards (started together), each on a pty behind its own ser2net."""
        starting: list[tuple[str, subprocess.Popen]] = []
        for _ in range(count):
            name = f"{self.name}-b{len(self.boards) + len(starting)}"
            args = [sys.executable, "-m", "deploykit", "virtual-board", str(getattr(manifest, "path", manifest)),
                    "--board", board, "--link", str(self.dir / name)] + (["--baud", str(baud)] if baud else []) \
                + ([] if pacing else ["--no-pacing"])
            starting.append((name, self.spawn(args, stdout=subprocess.PIPE, env=_env())))
        ports = []
        for name, vb in starting:
            if vb.stdout is None or not vb.stdout.readline().strip():
                raise DeviceError(f"virtual board {name} did not start; see {self.dir}")
            pty = os.readlink(self.dir / name)  # labgrid exports only paths under /dev/: the pty, not the link
            entry: dict = {"name": name, "board": board, "pty": pty, "rfc2217": rfc2217, "port": free_port(),
                     "speed": baud or 115200, "ser2net": None}
            self.boards.append(entry)
            self.start_ser2net(entry)
            ports.append(entry["port"])
        return ports

    def start_ser2net(self, entry: dict) -> None:
        """(Re)start ser2net for one board, on its port."""
        config = self.dir / f"{entry['name']}.ser2net.yaml"
        config.write_text(ser2net_config(entry["pty"], entry["port"], entry["speed"], entry["rfc2217"]))
        proc = self.spawn([ser2net_binary(), "-n", "-c", str(config), "-P", str(self.dir / f"{entry['name']}.pid")])
        entry["ser2net"] = proc
        wait_listening(entry["port"], proc=proc)

    def stop_ser2net(self, entry: dict, sig=signal.SIGKILL) -> None:
        proc = entry["ser2net"]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(5)

    def start_exporter(self, coordinator: str) -> subprocess.Popen:
        """labgrid-exporter for this host's boards, as NetworkSerialPort resources, group `name`."""
        config = self.dir / "exporter.yaml"
        lines = []
        for b in self.boards:
            lines += [f"{b['name']}:", "  NetworkSerialPort:", f"    host: {LOOPBACK}", f"    port: {b['port']}",
                      f"    speed: {b['speed']}", f"    protocol: {'rfc2217' if b['rfc2217'] else 'raw'}"]
        config.write_text("\n".join(lines) + "\n")
        return self.spawn([_labgrid_bin("labgrid-exporter"), "-c", coordinator, "-n", self.name,
                           "--hostname", LOOPBACK, str(config)], env=_env())

    def kill(self) -> None:
        """Take the whole host away at once (SIGKILL to its process group)."""
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        for proc in self.procs:
            _reap(proc)

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), newest first; remove a temp directory."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            _reap(proc, 5)
        self.kill()
        if self._own:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Coordinator:
    """labgrid-coordinator on a free 127.0.0.1 port, in its own process group."""

    def __init__(self, workdir):
        self.host = Host("coordinator", workdir)
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"

    def start(self) -> str:
        proc = self.host.spawn([_labgrid_bin("labgrid-coordinator"), "-l", self.address],
                               cwd=self.host.dir, env=_env())
        wait_listening(self.port, proc=proc)
        return self.address

    def client(self, *args, place: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run labgrid-client against this coordinator (place administration in tests)."""
        cmd = [_labgrid_bin("labgrid-client"), "-x", self.address] + (["-p", place] if place else []) + list(args)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=_env())
        if check and done.returncode:
            raise DeviceError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
        return done

    def create_place(self, name: str, patterns=(), tags: dict | None = None) -> None:
        """A place with matches and tags, as `labgrid-client -p NAME create / add-match / set-tags` makes it."""
        from deploykit.link.labgrid_place import CoordinatorClient as Client
        with Client(self.address) as client:
            client.create_place(name, patterns, tags)

    def stop(self) -> None:
        self.host.stop()

    def __enter__(self) -> Coordinator:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _labgrid_bin(name: str) -> str:
    """A labgrid console script beside this Python, else on PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else (shutil.which(name) or name)


def _env() -> dict:
    """The environment for child processes: this deploykit first on the path, no proxies."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = LOOPBACK + ",localhost"
    return env


def _reap(proc: subprocess.Popen, wait: float = 2.0) -> None:
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout:
        proc.stdout.close()
