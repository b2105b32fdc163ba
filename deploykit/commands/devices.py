"""`deploykit devices [--json] [--all]`: connected serial ports matched to boards/ by USB id."""

from __future__ import annotations

import json

import click

from deploykit.commands import text_table
from deploykit.commands.boards import boards_dir_option


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print the ports as JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also list ports no board file matches.")
@boards_dir_option
def devices(as_json, show_all):
    """List connected boards (port, board id, USB VID:PID, serial number)."""
    from deploykit.toolchain.devices import list_devices

    found = list_devices(known_only=not show_all)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], indent=2))
        return
    if not found:
        click.echo("no known board is connected (`--all` lists every serial port; "
                   "`deploykit deploy --port virtual` needs none)")
        return
    rows = [(d.port, "/".join(d.board_ids) or "-", d.vid_pid or "-", d.serial_number or "-", d.description)
            for d in found]
    for line in text_table(("PORT", "BOARD", "USB", "SERIAL", "DESCRIPTION"), rows):
        click.echo(line)
