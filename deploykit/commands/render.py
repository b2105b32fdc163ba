"""`deploykit render MANIFEST --board ID`: write a PlatformIO project for a board."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.commands import Renamed
from deploykit.commands.boards import boards_dir_option


@click.command("render")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--board", "board_id", metavar="ID", required=True, help="Board id (see `deploykit boards`).")
@click.option("-o", "--outdir", "outdir", cls=Renamed, old=("--output",), type=click.Path(path_type=Path), default=None,
              help="Output directory: new, empty, or one render wrote (its unedited files are updated; "
                   "files you added and .pio/ stay). Default: firmware-<board> beside the manifest.")
@click.option("--arena-size", type=int, default=None, help="Tensor arena bytes (overrides the projection).")
@click.option("--arena-margin", type=float, default=10.0, show_default=True,
              help="Percent added to the manifest's arena projection.")
@click.option("--arduino-sketch", is_flag=True, help="Also write NAME/NAME.ino with the same sources.")
@click.option("--diagnostics", is_flag=True,
              help="Profile every operator and keep every tensor (hil run --op-timing/--layer-diff); the arena grows.")
@boards_dir_option
def render(manifest, board_id, outdir, arena_size, arena_margin, arduino_sketch, diagnostics):
    """Render a PlatformIO project for a manifest and a board."""
    from deploykit.firmware.render import render as render_project

    if outdir is None:
        base = manifest if manifest.is_dir() else manifest.parent
        outdir = base / f"firmware-{board_id}"
    out = render_project(manifest, board_id, outdir, arena_size=arena_size,
                         arena_margin=arena_margin, arduino_sketch=arduino_sketch, diagnostics=diagnostics)
    click.echo(f"rendered {out} for board {board_id}; build it with `pio run -d {out}`")
