"""`deploykit boards [--json]`: list the boards in boards/."""

from __future__ import annotations

import json

import click

from deploykit.commands import text_table


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print every field of every board as JSON.")
def boards(as_json):
    """List the boards deploykit knows."""
    from deploykit.firmware.boards import all_boards

    found = all_boards()
    if as_json:
        click.echo(json.dumps([b.to_dict() for b in found], indent=2))
        return
    rows = [(b.id, b.name, f"{b.platform}/{b.board or '-'}", b.core, f"{b.clock_mhz} MHz",
             f"{b.ram_bytes // 1024} KB", f"{b.flash_bytes // 1024} KB", b.timer) for b in found]
    header = ("ID", "NAME", "PLATFORM/BOARD", "CORE", "CLOCK", "RAM", "FLASH", "TIMER")
    for line in text_table(header, rows):
        click.echo(line)
