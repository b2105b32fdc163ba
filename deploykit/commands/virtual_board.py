"""`deploykit virtual-board MANIFEST [--board ID] [--baud N] [--faults SPEC] [--seed N]
[--link PATH] [--no-pacing]`: serve a virtual board on a pty, print its stable path."""

from __future__ import annotations

import contextlib
import signal

import click

from deploykit.commands.boards import boards_dir_option


@click.command("virtual-board")
@click.argument("manifest", type=click.Path(path_type=str))
@click.option("--board", metavar="ID", default="virtual", show_default=True,
              help="Board it stands in for (boards/ID.toml).")
@click.option("--baud", type=int, default=None,
              help="Simulate a UART at this rate (default: the board's link, USB CDC at USB speed).")
@click.option("--faults", default=None,
              help="Fault spec. drop=P, corrupt=P: probability PER BYTE on the wire, each direction "
                   "(0.001 damages ~12% of 128-byte frames); dup=P, garbage=P: per device frame; "
                   "stall=RECORD:SECONDS, reset=RECORD, disconnect=RECORD. "
                   "E.g. drop=0.005,corrupt=0.005,dup=0.01,garbage=0.01,stall=40:2.5,reset=50,disconnect=120")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault generators.")
@click.option("--link", "path", type=click.Path(path_type=str), default=None,
              help="Where to put the stable symlink to the pty (default: a temp directory).")
@click.option("--no-pacing", is_flag=True, help="No link pacing and no simulated inference time.")
@boards_dir_option
def virtual_board(manifest, board, baud, faults, seed, path, no_pacing):
    """Serve a virtual board on a pty until Ctrl-C; print the port path on one line."""
    from deploykit.virtual_board import serve

    def ready(port: str) -> None:
        click.echo(port)
        click.get_text_stream("stdout").flush()
        click.echo(_describe(board, baud, faults, seed, no_pacing), err=True)

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        serve(manifest, ready, board=board, baud=baud, faults=faults, seed=seed, path=path,
              pacing=not no_pacing)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _board_link(board_id: str) -> str:
    from deploykit.firmware.boards import load_board
    b = load_board(board_id)
    rate, source = b.link_rate
    return f"its {b.link} link, {rate:,} B/s ({source})"


def _describe(board, baud, faults, seed, no_pacing) -> str:
    """The stderr line under the port path: what is being served."""
    rate = f"{baud} baud (UART)" if baud else _board_link(board)
    extra = (", no pacing" if no_pacing else "") + (f", faults {faults} (seed {seed})" if faults else "")
    return f"virtual board {board} (simulated) at {rate}{extra}; Ctrl-C stops it"
