"""`deploykit calibrate --port P --board ID`: a board's operator costs, measured.

Thin: options in, deploykit.harness.calibrate.calibrate, a summary out. The cost file goes
to --outdir, else ./boards/ (read by every command run from this folder). Exit 2 for an
unknown board or bad options, 3 when no board answers on the port or the toolchain fails.
"""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.commands.boards import boards_dir_option


@click.command("calibrate")
@click.option("-p", "--port", default="auto", show_default=True,
              help="Serial port or pyserial URL of the board, `auto` (found by USB id), or `virtual` "
                   "(the virtual board as --board, priced by its current cost figures).")
@click.option("--board", "board_id", metavar="ID", required=True, help="Board id (boards/ID.toml).")
@click.option("--runs", type=int, default=5, show_default=True,
              help="Per-operator timings asked for per micro-model; each operator's median is fitted.")
@click.option("-o", "--outdir", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for ID.cost.toml (default: ./boards/, which deploykit reads from this folder).")
@boards_dir_option
def calibrate(port, board_id, runs, out_dir):
    """Time small operator benchmarks on a board (firmware rendered with --diagnostics, flashed
    once per micro-model) and fit the virtual board's cost figures for it."""
    from deploykit.harness.calibrate import calibrate as run

    out = out_dir or Path("boards")
    result = run(port, board_id, out, runs=runs, on_progress=lambda text: click.echo(text, err=True))
    where = "simulated, the virtual board" if result.simulated else "measured on the board"
    click.echo(f"{board_id}: {len(result.coefficients)} figures from {result.observations} operators ({where}); "
               f"largest misfit {result.residual:.1%}")
    for name, value in result.coefficients.items():
        click.echo(f"  {name} = {value:.4g}")
    click.echo(f"wrote {result.path} (the virtual board uses it for {board_id} where this folder is on the "
               "boards path: ./boards/, $DEPLOYKIT_BOARDS_PATH or --boards-dir)")
