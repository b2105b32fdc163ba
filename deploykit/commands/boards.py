"""`deploykit boards [--json]`: list the boards in boards/."""

from __future__ import annotations

import json

import click


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print every field of every board as JSON.")
def boards(as_json):
    """List the boards deploykit knows."""
    from deploykit.boards import all_boards

    found = all_boards()
    if as_json:
        click.echo(json.dumps([b.to_dict() for b in found], indent=2))
        return
    rows = [(b.id, b.name, f"{b.platform}/{b.board or '-'}", b.core, f"{b.clock_mhz} MHz",
             f"{b.ram_bytes // 1024} KB", f"{b.flash_bytes // 1024} KB", b.timer) for b in found]
    header = ("ID", "NAME", "PLATFORM/BOARD", "CORE", "CLOCK", "RAM", "FLASH", "TIMER")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
