"""`deploykit boards [--json]`: list the boards (built-in and the user's), and the
`--boards-dir` option every command that takes --board shares."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deploykit.commands import text_table


def _set_dirs(ctx, param, value):
    """Register --boards-dir folders before the command body loads a board, for this command only."""
    if value:
        from deploykit.firmware.boards import set_boards_dirs
        set_boards_dirs(value)
        ctx.call_on_close(lambda: set_boards_dirs(()))
    return value


def boards_dir_option(command):
    """--boards-dir DIR (repeatable): board files read after the built-in ones, ./boards/ and
    $DEPLOYKIT_BOARDS_PATH; a board with a built-in id replaces it."""
    return click.option(
        "--boards-dir", multiple=True, expose_value=False, callback=_set_dirs, is_eager=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="A folder of your own board .toml files (repeatable; later wins over earlier, "
             "built-in, ./boards/ and $DEPLOYKIT_BOARDS_PATH).")(command)


def _source(board) -> str:
    """Where a board came from, and whether it replaced a built-in board or another user file."""
    if not board.overrides:
        return board.source
    from deploykit.firmware.resources import data_dir
    built_in = Path(board.overrides).parent == data_dir("boards").resolve()
    return f"{board.source} (overrides {'built-in' if built_in else board.overrides})"


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print every field of every board as JSON.")
@boards_dir_option
def boards(as_json):
    """List the boards deploykit knows: built-in, ./boards/, $DEPLOYKIT_BOARDS_PATH, --boards-dir."""
    from deploykit.firmware.boards import all_boards

    found = all_boards()
    if as_json:
        click.echo(json.dumps([b.to_dict() for b in found], indent=2))
        return
    rows = [(b.id, b.name, f"{b.platform}/{b.board or '-'}", b.core, f"{b.clock_mhz} MHz",
             f"{b.ram_bytes // 1024} KB", f"{b.flash_bytes // 1024} KB", b.timer, _source(b)) for b in found]
    header = ("ID", "NAME", "PLATFORM/BOARD", "CORE", "CLOCK", "RAM", "FLASH", "TIMER", "SOURCE")
    for line in text_table(header, rows):
        click.echo(line)
