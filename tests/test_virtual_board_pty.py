"""The virtual board on a real pty: stable symlink, reset, the CLI; the link's UART pacing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deploykit.firmware.boards import load_board
from deploykit.link import ports
from deploykit.protocol import Begin, Hello, Input, Nack, Ping, Pong, ResultBatch, encode_message, wire_size
from deploykit.virtual_board import DeviceEngine, FaultInjector, PacedLink, VirtualBoard, build_firmware
from deploykit.virtual_board.rawclient import RawClient

ROOT = Path(__file__).resolve().parents[1]


def test_context_manager_yields_a_stable_symlink_and_cleans_up(converted_examples):
    with VirtualBoard(converted_examples["sine"], pacing=False) as path:
        assert os.path.islink(path) and os.readlink(path).startswith("/dev/pts/")
        port = ports.open_port(path, 115200, timeout=0.05)
        client = RawClient(port)
        hello = client.handshake()
        assert hello.simulated and hello.model_sha256.hex() == converted_examples["sine"].sha256
        client.send(Begin(0), Input(0, bytes(range(30))))
        got = client.receive(lambda ms: sum(len(m.outputs) for m in ms if isinstance(m, ResultBatch)) == 30)
        assert sum(len(m.outputs) for m in got if isinstance(m, ResultBatch)) == 30
        port.close()
    assert not os.path.lexists(path) and not os.path.exists(os.path.dirname(path))


def test_pulse_reset_on_a_pty_is_the_1200_baud_touch(converted_examples):
    with VirtualBoard(converted_examples["sine"], pacing=True) as path:
        port = ports.open_port(path, 115200, timeout=0.05)
        client = RawClient(port)
        client.handshake()
        client.send(Begin(0), Input(0, b"\x01\x02"))
        client.receive(lambda ms: any(isinstance(m, ResultBatch) for m in ms))
        ports.pulse_reset(port)                      # DTR raises ENOTTY on a pty: falls back
        got = client.receive(lambda ms: any(isinstance(m, Hello) for m in ms))
        assert any(isinstance(m, Hello) for m in got)
        assert b"deploykit virtual board" in bytes(client.text)
        client.send(Input(2, b"\x03"))
        assert Nack(0) in client.receive(lambda ms: Nack(0) in ms)
        port.close()


def test_cli_prints_the_path_serves_and_stops_on_ctrl_c(converted_examples, tmp_path):
    link = tmp_path / "by-id" / "virtual-sine"
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "virtual-board",
                             str(converted_examples["sine"].path), "--link", str(link), "--faults", "garbage=0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline().strip()
        assert line == str(link) and os.path.islink(line)
        port = ports.open_port(line, 115200, timeout=0.05)
        client = RawClient(port)
        client.handshake()
        client.send(Ping(b"cli"))
        assert Pong(b"cli") in client.receive(lambda ms: Pong(b"cli") in ms)
        port.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert not os.path.lexists(link)


@pytest.mark.parametrize("args, words", [
    (["--board", "nope"], "unknown board 'nope'"),
    (["--faults", "reset=x"], "fault spec"),
    (["--baud", "0"], "baud rate 0"),
])
def test_cli_bad_input_exits_2_one_line_nothing_written(converted_examples, tmp_path, capsys, args, words):
    from deploykit.cli import main
    link = tmp_path / "port"
    with pytest.raises(SystemExit) as info:
        main(["virtual-board", str(converted_examples["sine"].path), "--link", str(link), *args])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and words in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where, words", [("file", "already exists"), ("file/port", "cannot make the port link")])
def test_cli_link_never_replaces_a_file(converted_examples, tmp_path, capsys, where, words):
    """--link at an existing file (say /etc/passwd), or under one: refused, the file untouched."""
    from deploykit.cli import main
    precious = tmp_path / "file"
    precious.write_text("keep me")
    with pytest.raises(SystemExit) as info:
        main(["virtual-board", str(converted_examples["sine"].path), "--link", str(tmp_path / where)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and words in err
    assert precious.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_stale_link_of_a_killed_board_is_replaced(converted_examples, tmp_path):
    link = tmp_path / "port"
    link.symlink_to("/dev/pts/9999")
    with VirtualBoard(converted_examples["sine"], pacing=False, path=link) as path:
        assert os.readlink(path) != "/dev/pts/9999" and os.readlink(path).startswith("/dev/pts/")
    assert not os.path.lexists(link) and list(tmp_path.iterdir()) == []


def test_cli_missing_manifest_is_bad_input(tmp_path, capsys):
    from deploykit.cli import main
    with pytest.raises(SystemExit) as info:
        main(["virtual-board", str(tmp_path / "none" / "manifest.json")])
    assert info.value.code == 2 and "does not exist" in capsys.readouterr().err


# ----- UART pacing, in simulated time (exact, no wall clock) ------------------------------

def test_bytes_are_paced_at_ten_bits_a_byte(converted_examples):
    fw = build_firmware(converted_examples["sine"], load_board("virtual"))
    link = PacedLink(DeviceEngine(fw, FaultInjector(), timed=True), baud=9600, paced=True)
    link.step(0.0)
    link.step(1.0)                                     # boot output gone by now
    ping = encode_message(Ping(b"x" * 50), 0)
    byte = 10 / 9600
    link.host_write(ping, 1.0)
    pong_len = wire_size(50)
    arrives = 1.0 + len(ping) * byte                   # last byte of PING reaches the device
    assert link.step(arrives + byte / 2) == b""        # PONG sent at `arrives`: 10 bits to go
    assert link.step(arrives + 1.5 * byte) == b"\x00"  # its first byte
    middle = link.step(arrives + (pong_len // 2) * byte + byte / 2)
    assert len(middle) == pong_len // 2 - 1
    rest = link.step(arrives + pong_len * byte + byte / 2)
    assert len(rest) == pong_len - pong_len // 2
    assert RawClient(None).feed(b"\x00" + middle + rest) == [Pong(b"x" * 50)]


def test_host_bytes_queue_behind_each_other_on_the_line(converted_examples):
    fw = build_firmware(converted_examples["sine"], load_board("virtual"))
    link = PacedLink(DeviceEngine(fw, FaultInjector(), timed=True), baud=1000, paced=True)
    link.step(0.0)
    link.step(10.0)                                    # boot text and HELLO sent (2.8 s at 1000 baud)
    a, b = encode_message(Ping(b"a"), 0), encode_message(Ping(b"b"), 1)
    link.host_write(a, 10.0)
    link.host_write(b, 10.0)                            # written at once, sent one after the other
    both = 10.0 + (len(a) + len(b)) * 0.01              # b's last byte reaches the device
    first = link.step(both + 0.005)
    assert RawClient(None).feed(first) == [Pong(b"a")] and len(first) == len(a)   # nothing of b's yet
    assert RawClient(None).feed(first + link.step(both + 1.0)) == [Pong(b"a"), Pong(b"b")]
