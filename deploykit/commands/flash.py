"""`deploykit flash DIR [-p URL|auto] [--board ID] [-m MANIFEST]`: upload and verify."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.commands.boards import boards_dir_option


@click.command("flash")
@click.argument("project_dir", type=click.Path(path_type=Path))
@click.option("-p", "--port", default="auto", show_default=True,
              help="Serial port or pyserial URL of the board; auto finds it by USB VID:PID.")
@click.option("--board", "board_id", metavar="ID", help="The env (board id) to flash; default: the project's only env.")
@click.option("-m", "--manifest", type=click.Path(path_type=Path),
              help="Check the flashed model against this manifest (default: the hash the project was rendered with).")
@click.option("--wait", "wait_s", type=float, default=20.0, show_default=True,
              help="Seconds to wait for the board to come back after the upload.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@boards_dir_option
def flash(project_dir, port, board_id, manifest, wait_s, quiet):
    """Upload a built project, wait for the board to re-appear, check its model hash."""
    from deploykit.commands.display import line_status
    from deploykit.toolchain.flash import flash as flash_project

    with line_status(f"Flashing {project_dir}", quiet=quiet) as on_line:
        result = flash_project(project_dir, port, board_id, manifest, on_line=on_line, wait_s=wait_s)
    hello = result.hello
    click.echo(f"flashed {result.board_id} on {result.port}: model sha256 {hello['model_sha256'][:16]}… "
               f"verified, arena {hello['arena_used']:,}/{hello['arena_configured']:,} B; log: {result.log}")
