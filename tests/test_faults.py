"""Fault injection: one spec for CLI and URL, seeded and reproducible, applied on the wire."""

from __future__ import annotations

import os

import pytest
import serial
from conftest import reopen

from deploykit.errors import BadInput
from deploykit.firmware.boards import load_board
from deploykit.link import ports
from deploykit.protocol import Ack, Begin, Hello, Input, Ping, ResultBatch, encode_message
from deploykit.virtual_board import DeviceEngine, FaultInjector, PacedLink, VirtualBoard, build_firmware, parse_faults
from deploykit.virtual_board.rawclient import RawClient

FULL = "drop=0.005,corrupt=0.005,dup=0.01,garbage=0.01,stall=40:2.5,reset=50,reset=70,disconnect=120"


@pytest.fixture(scope="module")
def sine_fw(converted_examples):
    return build_firmware(converted_examples["sine"], load_board("virtual"))


def test_parse_full_spec():
    spec = parse_faults(FULL)
    assert (spec.drop, spec.corrupt, spec.dup, spec.garbage) == (0.005, 0.005, 0.01, 0.01)
    assert spec.stalls == ((40, 2.5),) and spec.resets == (50, 70) and spec.disconnects == (120,)
    assert parse_faults("") == parse_faults(None) == parse_faults(" , ")


@pytest.mark.parametrize("bad", ["drop=2", "drop=x", "drop", "stall=40", "stall=40:-1", "stall=x:1",
                                 "reset=abc", "reset=-1", "bogus=1", "disconnect="])
def test_bad_spec_is_one_line_bad_input(bad):
    with pytest.raises(BadInput) as info:
        parse_faults(bad)
    msg = str(info.value)
    assert "\n" not in msg and repr(bad) in msg and "drop=0.005" in msg


def test_cli_bad_spec_exits_2_with_one_line_and_writes_nothing(converted_examples, tmp_path, capsys):
    from deploykit.cli import main
    link = tmp_path / "ttyVB"
    with pytest.raises(SystemExit) as info:
        main(["virtual-board", str(converted_examples["sine"].path), "--faults", "drop=1.5", "--link", str(link)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "drop=1.5" in err
    assert not link.exists() and list(tmp_path.iterdir()) == []


def test_wire_faults_are_seeded_and_reproducible():
    data = bytes(range(256)) * 80
    a = FaultInjector("drop=0.1,corrupt=0.05", seed=1).wire(data, "rx")
    b = FaultInjector("drop=0.1,corrupt=0.05", seed=1).wire(data, "rx")
    c = FaultInjector("drop=0.1,corrupt=0.05", seed=2).wire(data, "rx")
    assert a == b and a != c
    assert 0.08 * len(data) < len(data) - len(a) < 0.12 * len(data)


def test_corruption_keeps_length_and_changes_some_bytes():
    data = bytes(20000)
    out = FaultInjector("corrupt=0.01", seed=3).wire(data, "tx")
    changed = sum(1 for x in out if x)
    assert len(out) == len(data) and 100 < changed < 300


def test_no_faults_leave_bytes_alone():
    assert FaultInjector(None).wire(b"\x00abc", "rx") == b"\x00abc"
    assert FaultInjector(None).frame(b"\x00abc\x00") == [b"\x00abc\x00"]


def test_record_faults_fire_once_each():
    faults = FaultInjector("reset=3,reset=3,stall=3:1.5,disconnect=9")
    expected = [("reset", None), ("reset", None), ("stall", 1.5)]
    assert sorted(faults.before_record(3), key=str) == sorted(expected, key=str)
    assert faults.before_record(3) == []
    assert faults.before_record(9) == [("disconnect", None)]


def _drive(fw, spec, seed=0):
    """Stream 10 one-byte records through a PacedLink with faults; return what the host decodes."""
    link = PacedLink(DeviceEngine(fw, FaultInjector(spec, seed), timed=False), 115200, paced=False)
    client = RawClient(None)
    got = client.feed(link.step(0.0))
    link.host_write(encode_message(Begin(0), 0), 0.1)
    for r in range(10):
        link.host_write(encode_message(Input(r, bytes([r])), r + 1), 0.2 + r * 0.1)
        got += client.feed(link.step(0.2 + r * 0.1))
    got += client.feed(link.step(5.0))
    return got, client


def test_dup_and_garbage_act_on_device_frames(sine_fw):
    clean, _ = _drive(sine_fw, None)
    doubled, _ = _drive(sine_fw, "dup=1")
    assert len(doubled) == 2 * len(clean)
    noisy, client = _drive(sine_fw, "garbage=1")
    assert noisy == clean and b"] " in bytes(client.text)


def test_same_seed_same_faulty_session(sine_fw):
    first, _ = _drive(sine_fw, "drop=0.02,corrupt=0.02,dup=0.2,garbage=0.2", seed=7)
    again, _ = _drive(sine_fw, "drop=0.02,corrupt=0.02,dup=0.2,garbage=0.2", seed=7)
    assert first == again


def test_reset_at_record_k_reboots_the_device(sine_fw):
    got, _ = _drive(sine_fw, "reset=5")
    kinds = [type(m).__name__ for m in got]
    assert kinds.count("Hello") == 2                     # boot, then the spontaneous reset
    done = {m.first_record for m in got if isinstance(m, ResultBatch)}
    assert done == {0, 1, 2, 3, 4}                       # record 5 and on: state lost


def test_stall_holds_the_answer_back(sine_fw):
    engine = DeviceEngine(sine_fw, FaultInjector("stall=2:1.5"), timed=False)
    engine.receive(encode_message(Begin(0), 0) + encode_message(Input(0, b"\x01\x02\x03"), 1), 1.0)
    results = [(t, data) for t, data, _ in engine.out if t > 1.0]
    assert results and all(t == pytest.approx(2.5) for t, _ in results)
    engine.receive(encode_message(Ping(b"p"), 2), 1.2)   # arrives while stalled: buffered
    assert engine.rx and engine.next_due() == pytest.approx(2.5)


def test_disconnect_at_record_k_reappears_behind_the_same_path(converted_examples):
    with VirtualBoard(converted_examples["sine"], pacing=False, faults="disconnect=3") as path:
        first_target = os.readlink(path)
        port = ports.open_port(path, 115200, timeout=0.05)
        client = RawClient(port)
        client.handshake()
        client.send(Begin(0), Input(0, b"\x00\x01\x02\x03\x04"))
        with pytest.raises((serial.SerialException, OSError)):   # as an unplugged USB port
            client.receive(timeout=3.0)
        port.close()
        port = reopen(path, 115200, within=5.0)
        assert os.path.islink(path)
        client = RawClient(port)
        hello = client.handshake()
        assert isinstance(hello, Hello)
        client.send(Begin(3), Input(3, b"\x03"))
        got = client.receive(lambda ms: any(isinstance(m, ResultBatch) for m in ms), timeout=3.0)
        assert Ack(4) in got and any(isinstance(m, ResultBatch) and m.first_record == 3 for m in got)
        port.close()
        assert first_target.startswith("/dev/pts/") and os.readlink(path).startswith("/dev/pts/")
