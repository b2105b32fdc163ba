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


def test_disconnect_fault_then_reopen_finds_the_same_board(converted_examples):
    address = url(converted_examples["sine"], "pacing=0&faults=disconnect=2")
    port = ports.open_port(address, timeout=0.05)
    client = RawClient(port)
    client.handshake()
    client.send(Begin(0), Input(0, b"\x01\x02\x03"))
    with pytest.raises(serial.SerialException, match="disconnected"):
        client.receive(timeout=2.0)
    port.close()
    with pytest.raises(BadInput, match="does not exist"):   # still re-enumerating
        ports.open_port(address)
    port = reopen(address, within=3.0)
    client = RawClient(port)
    client.handshake()
    client.send(Begin(2), Input(2, b"\x03"))               # fired once: record 2 runs now
    got = client.receive(lambda ms: any(isinstance(m, ResultBatch) for m in ms), 2.0)
    assert any(isinstance(m, ResultBatch) and m.first_record == 2 for m in got)
    port.close()


def test_paced_url_reads_respect_the_timeout(converted_examples):
    port = ports.open_port(url(converted_examples["sine"], "baud=9600&pacing=1"), timeout=0.02)
    assert port.read(10_000) is not None and port.in_waiting >= 0
    port.close()
