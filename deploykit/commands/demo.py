"""`deploykit demo`: the sine example, trained and deployed to the virtual board, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.commands import Renamed


@click.command("demo")
@click.option("-o", "--outdir", "outdir", cls=Renamed, old=("--output",), type=click.Path(path_type=Path),
              default=Path("deploykit-demo"),
              show_default=True, help="Where the example, model, firmware and reports go.")
@click.option("--retrain", is_flag=True, help="Train the example again instead of reusing OUTDIR/example.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def demo(outdir, retrain, quiet):
    """Train the sine example and deploy it to a virtual Arduino Nano 33 BLE Sense."""
    from deploykit.commands.deploy import run_with_display
    from deploykit.deploy import DEMO_PROFILE, demo as run_demo

    if not quiet:
        click.echo(f"deploykit demo: sine example -> virtual board ({DEMO_PROFILE} profile) -> {outdir}/", err=True)
    run_with_display(quiet, lambda stages: run_demo(outdir, stages=stages, retrain=retrain),
                     stage_names=("train",))
