"""The virtual:// pyserial URL handler: every command that takes --port takes it."""

from __future__ import annotations

import pytest
import serial
from conftest import reopen

from deploykit.errors import BadInput
from deploykit.link import ports
from deploykit.link.serial_handlers.protocol_virtual import parse_url
from deploykit.protocol import Ack, Begin, Hello, Input, Nack, Ping, Pong, ResultBatch
from deploykit.virtual_board.rawclient import RawClient


def url(manifest, query="pacing=0"):
    return f"virtual://{manifest.path}?{query}"


def test_parse_url_options():
    path, kw = parse_url("virtual://build/sine/manifest.json?board=nano33ble_sense&baud=9600"
                         "&faults=drop=0.01,stall=4:1.5&seed=3&pacing=0")
    assert path == "build/sine/manifest.json"
    assert kw == {"board": "nano33ble_sense", "baud": 9600, "faults": "drop=0.01,stall=4:1.5",
                  "seed": 3, "pacing": False}
    assert parse_url("virtual:///abs/m.json") == ("/abs/m.json", {"faults": None})


@pytest.mark.parametrize("bad, why", [
    ("virtual://m.json?colour=red", "unknown option 'colour'"),
    ("virtual://m.json?baud=fast", "baud must be a whole number"),
    ("virtual://m.json?pacing=2", "pacing must be 0 or 1"),
    ("virtual://?board=virtual", "names no manifest"),
])
def test_bad_url_is_value_error_as_pyserial_says_and_one_line_bad_input(bad, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_url(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(BadInput, match=why) as info:  # what open_port makes of it
        ports.open_port(bad)
    assert "\n" not in str(info.value)


def test_missing_manifest_through_open_port_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        ports.open_port(f"virtual://{tmp_path}/nothing/manifest.json")


def test_bad_fault_spec_in_url_is_bad_input(converted_examples):
    with pytest.raises(BadInput, match="fault spec"):
        ports.open_port(url(converted_examples["sine"], "faults=drop=7"))


def test_handshake_ping_and_inference_over_the_url(converted_examples):
    port = ports.open_port(url(converted_examples["sine"], "board=nano33ble_sense&pacing=0"), timeout=0.05)
    client = RawClient(port)
    hello = client.handshake()
    assert hello.simulated and hello.board_id == "nano33ble_sense"
    assert hello.model_sha256.hex() == converted_examples["sine"].sha256
    client.send(Ping(b"\x00hi\x00"))
    assert Pong(b"\x00hi\x00") in client.receive(lambda ms: ms, 2.0)
    client.send(Begin(0), Input(0, b"\x10\x20"))
    got = client.receive(lambda ms: any(isinstance(m, ResultBatch) for m in ms), 2.0)
    assert got[:2] == [Ack(0), Ack(2)] and len(got[2].outputs) == 2
    port.close()


def test_dtr_pulse_reboots_with_banner_and_new_hello(converted_examples):
    port = ports.open_port(url(converted_examples["sine"]), timeout=0.05)
    client = RawClient(port)
    client.handshake()
    client.send(Begin(0), Input(0, b"\x01\x02"))
    client.receive(lambda ms: any(isinstance(m, ResultBatch) for m in ms), 2.0)
    ports.pulse_reset(port)
    got = client.receive(lambda ms: any(isinstance(m, Hello) for m in ms), 2.0)
    assert any(isinstance(m, Hello) for m in got)
    assert b"deploykit virtual board" in bytes(client.text)
    client.send(Input(2, b"\x03"))                      # state lost: expected is 0 again
    assert Nack(0) in client.receive(lambda ms: Nack(0) in ms, 2.0)
    port.close()


def _disconnect_at_record_2(port):
    """Handshake, send record 0..2: the board vanishes at record 2 (faults=disconnect=2)."""
    client = RawClient(port)
    client.handshake()
    client.send(Begin(0), Input(0, b"\x01\x02\x03"))
    with pytest.raises(serial.SerialException, match="disconnected"):
        client.receive(timeout=2.0)


def test_disconnect_fault_then_reopen_finds_the_same_board(converted_examples):
    address = url(converted_examples["sine"], "pacing=0&faults=disconnect=2")
    port = ports.open_port(address, timeout=0.05)
    _disconnect_at_record_2(port)
    port.close()
    with pytest.raises(BadInput, match="does not exist"):   # still re-enumerating
        ports.reopen_port(port, address)
    port = reopen(port, within=3.0)                        # the same port object, as FramePort reopens it
    client = RawClient(port)
    client.handshake()
    client.send(Begin(2), Input(2, b"\x03"))               # fired once: record 2 runs now
    got = client.receive(lambda ms: any(isinstance(m, ResultBatch) for m in ms), 2.0)
    assert any(isinstance(m, ResultBatch) and m.first_record == 2 for m in got)
    port.close()


def test_two_ports_of_one_url_share_nothing(converted_examples):
    """Before: a module-level registry kept the unplugged board by URL, so another port of
    the same URL was refused while it re-enumerated, then handed that board (its fault spent),
    and the two ports shared one cached TFLM interpreter."""
    address = url(converted_examples["sine"], "pacing=0&faults=disconnect=2")
    first = ports.open_port(address, timeout=0.05)
    _disconnect_at_record_2(first)
    first.close()
    second = ports.open_port(address, timeout=0.05)        # at once: nothing of the first is left
    third = ports.open_port(address, timeout=0.05)
    assert second.link is not first._unplugged[0] and second.link is not third.link
    assert second.link.engine.fw.runner is not third.link.engine.fw.runner
    _disconnect_at_record_2(second)                        # a new board: its own fault fires
    for port in (second, third):
        port.close()


def test_a_session_survives_a_disconnect_of_a_virtual_url_once(converted_examples):
    """Two sessions on one URL at once, both unplugged at record 5: each reopens its own board
    and sees one reconnect. Before, the second unplug replaced the first in the registry."""
    import threading

    import numpy as np

    from deploykit.link.session import DeviceSession, Timeouts

    manifest = converted_examples["sine"]
    address = url(manifest, "pacing=0&faults=disconnect=5")
    x = np.arange(12, dtype=np.int8).reshape(12, 1).view(np.uint8)
    got: dict[int, tuple] = {}

    def run(i):
        with DeviceSession(address, 115200, expected_sha256=manifest.sha256,
                           timeouts=Timeouts(reopen_within=3.0)) as dev:
            got[i] = (len(list(dev.stream(x))), dev.faults.reconnects)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got == {0: (12, 1), 1: (12, 1)}


def test_errors_are_pyserials(converted_examples, tmp_path):
    """The handler raises ValueError for bad parameters and SerialException when the port cannot open."""
    from deploykit.link.serial_handlers.protocol_virtual import Serial
    for bad in (f"virtual://{tmp_path}/nothing/manifest.json", url(converted_examples["sine"], "faults=drop=7"),
                url(converted_examples["sine"], "board=no_such_board")):
        with pytest.raises(ValueError) as info:
            serial.serial_for_url(bad)
        assert not isinstance(info.value, BadInput)
    port = Serial(url(converted_examples["sine"], "pacing=0&faults=disconnect=2"), timeout=0.05)
    _disconnect_at_record_2(port)
    port.close()
    with pytest.raises(serial.SerialException, match="re-enumerating"):
        port.open()


def test_paced_url_reads_respect_the_timeout(converted_examples):
    port = ports.open_port(url(converted_examples["sine"], "baud=9600&pacing=1"), timeout=0.02)
    assert port.read(10_000) is not None and port.in_waiting >= 0
    port.close()
