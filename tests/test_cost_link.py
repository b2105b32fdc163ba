"""The virtual board's link as the board has it: USB CDC at USB speed, a UART at its baud.

Rates are asserted on the configured pacing (byte time) and on simulated time, never on
the wall clock. Also: board files must say which link they have, `deploy --no-pacing`
reaches the virtual board, and the report says which link it assumed.
"""

from __future__ import annotations

import json

import pytest

from deploykit.cli import main
from deploykit.errors import BadInput
from deploykit.firmware.boards import USB_CDC_BYTES_PER_S, load_board
from deploykit.firmware.resources import data_dir
from deploykit.protocol import Ping, Pong, encode_message
from deploykit.protocol.framing import FrameDecoder
from deploykit.protocol.messages import decode_message
from deploykit.virtual_board.device import make_link

USB_BOARDS = ("nano33ble_sense", "nano33ble_sense_rev2", "nano_rp2040_connect", "portenta_h7_m7",
              "teensy41", "pico")
UART_BOARDS = ("virtual", "esp32dev", "esp32c3_devkitm", "nucleo_f767zi", "nucleo_l4r5zi")


def run_cli(args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    return exit_.value.code


@pytest.mark.parametrize("board_id", USB_BOARDS)
def test_usb_cdc_boards_are_paced_at_usb_full_speed_whatever_their_baud(sine_manifest, board_id):
    board = load_board(board_id)
    link = make_link(sine_manifest, board_id)
    assert board.link == "usb-cdc" and link.kind == "usb-cdc"
    assert link.byte_time == pytest.approx(1 / USB_CDC_BYTES_PER_S) == pytest.approx(1e-6)
    assert link.byte_time < (10 / board.baud) / 50     # not the nominal 115200 baud


@pytest.mark.parametrize("board_id", UART_BOARDS)
def test_uart_boards_are_paced_at_their_baud(sine_manifest, board_id):
    board = load_board(board_id)
    link = make_link(sine_manifest, board_id)
    assert board.link == "uart" and link.byte_time == pytest.approx(10 / board.baud)


def test_an_explicit_baud_is_a_uart_at_that_rate_and_no_pacing_is_none(sine_manifest):
    forced = make_link(sine_manifest, "nano33ble_sense", baud=9600)
    assert forced.kind == "uart" and forced.byte_time == pytest.approx(10 / 9600)
    assert make_link(sine_manifest, "nano33ble_sense", pacing=False).byte_time == 0


def test_a_measured_link_rate_in_the_board_file_wins(sine_manifest, tmp_path):
    text = (data_dir("boards") / "nano33ble_sense.toml").read_text(encoding="utf-8")
    (tmp_path / "nano33ble_sense.toml").write_text(text + "\nlink_bytes_per_s = 400000\n", encoding="utf-8")
    board = load_board("nano33ble_sense", tmp_path)
    assert board.link_rate == (400_000, "measured (board file)")
    assert make_link(sine_manifest, board).byte_time == pytest.approx(1 / 400_000)


def _ping_round_trip_arrives_by(link, seconds: float) -> bool:
    """Simulated time only: boot, then a PING at t=1 s; has the PONG arrived by 1 s + seconds?"""
    link.step(0.0)
    link.step(1.0)                      # boot banner, HELLO, LOG are out by now
    link.host_write(encode_message(Ping(b"x" * 32), 7), 1.0)
    got = link.step(1.0 + seconds)
    frames = [f for f in FrameDecoder(4096).feed(got) if hasattr(f, "payload")]
    return any(isinstance(decode_message(f), Pong) for f in frames)


def test_a_ping_round_trip_takes_usb_time_on_usb_and_uart_time_on_a_uart(sine_manifest):
    """~90 bytes there and back: ~0.1 ms at 1 MB/s, ~8 ms at 115200 baud."""
    assert _ping_round_trip_arrives_by(make_link(sine_manifest, "nano33ble_sense"), 0.001)
    assert not _ping_round_trip_arrives_by(make_link(sine_manifest, "esp32dev"), 0.001)
    assert _ping_round_trip_arrives_by(make_link(sine_manifest, "esp32dev"), 0.02)


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('link = "usb-cdc"\n', ""), "link"),
    (lambda t: t.replace('link = "usb-cdc"', 'link = "spi"'), "link"),
    (lambda t: t + "\nlink_bytes_per_s = 0\n", "link_bytes_per_s"),
    (lambda t: t + '\nkernels = "xnnpack"\n', "kernels"),
])
def test_board_files_must_say_which_link_and_kernels_they_have(tmp_path, edit, key):
    text = (data_dir("boards") / "nano33ble_sense.toml").read_text(encoding="utf-8")
    (tmp_path / "nano33ble_sense.toml").write_text(edit(text), encoding="utf-8")
    with pytest.raises(BadInput, match=f"'{key}'"):
        load_board("nano33ble_sense", tmp_path)


def test_deploy_no_pacing_reaches_the_virtual_board_and_the_report_names_the_link(
        sine_manifest, tmp_path, mocker, capsys):
    import deploykit.virtual_board as vb
    spy = mocker.patch("deploykit.virtual_board.VirtualBoard", wraps=vb.VirtualBoard)
    out = tmp_path / "out"
    code = run_cli(["deploy", str(sine_manifest.path), "--board", "virtual", "--profile", "nano33ble_sense",
                    "--no-pacing", "-o", str(out), "--limit", "5", "--quiet"])
    assert code == 0, capsys.readouterr()
    assert spy.call_args.kwargs["pacing"] is False
    report = json.loads((out / "hil" / "report.json").read_text())
    assert report["link"] == {"board": "nano33ble_sense", "kind": "usb-cdc", "bytes_per_s": 1_000_000,
                              "source": "USB full speed (assumed)", "nominal_baud": 115200}
    md = (out / "hil" / "report.md").read_text()
    assert "- link: usb-cdc, 1,000,000 B/s (USB full speed (assumed))" in md
    assert "Latency (simulated (estimate)" in md
    assert "link: usb-cdc" in (out / "hil" / "report.html").read_text()


def test_deploy_no_pacing_on_a_real_board_is_bad_input(sine_manifest, tmp_path, capsys):
    import os
    main_fd, device_fd = os.openpty()  # a real serial port for the board: deploy checks it opens first
    try:
        code = run_cli(["deploy", str(sine_manifest.path), "--board", "nano33ble_sense",
                        "--port", os.ttyname(device_fd), "--no-pacing", "-o", str(tmp_path / "out"), "--quiet"])
    finally:
        os.close(main_fd)
        os.close(device_fd)
    assert code == 2 and "--no-pacing applies to the virtual board only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
