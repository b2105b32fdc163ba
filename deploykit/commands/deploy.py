"""`deploykit deploy MODEL [--board ID] [--port URL|auto|virtual] [--data FILE] [thresholds] [--no-pacing]`.

Without a board connected, deploy falls back to the virtual board only for a person at a
terminal (and says so); in CI, with --quiet or without a terminal it fails with exit 3,
so a pipeline never passes on the virtual board by accident.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from deploykit.commands import LABEL_COLUMN, LABEL_COLUMN_HELP, Renamed, failed_thresholds
from deploykit.commands.boards import boards_dir_option
from deploykit.deploy import DEFAULT_PROFILE, STAGES, StageTimer


class RichStages(StageTimer):
    """One rich progress display: a row per stage with its latest output line and time."""

    def __init__(self, console, stage_names=()):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        super().__init__()
        self.console = console
        self.progress = Progress(SpinnerColumn(finished_text="•"), TextColumn("{task.fields[stage]:<8}"),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
        self.tasks = {name: self.progress.add_task("[dim]waiting", stage=name, total=1, start=False)
                      for name in (*stage_names, *STAGES)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress.live.is_started:
            self.progress.stop()

    def _show(self):
        """Start the display at the first thing to show: an input refused before any stage
        (no board, a bad path) then prints its one line and nothing else."""
        if not self.progress.live.is_started:
            self.progress.start()

    def note(self, text):
        if text:
            self._show()
            self.progress.console.print(f"[yellow]{text}[/]")

    def on_start(self, name):
        self._show()
        self.progress.start_task(self.tasks[name])
        self.progress.update(self.tasks[name], description="running")

    def on_line(self, name, line):
        from rich.markup import escape

        if line.strip():
            self.progress.update(self.tasks[name], description=f"[dim]{escape(line.strip()[:90])}[/]")

    def on_end(self, name, ok, seconds):
        text = f"[green]done[/] in {seconds:.1f} s" if ok else "[red]failed[/]"
        self.progress.update(self.tasks[name], description=text, completed=1)
        self.progress.stop_task(self.tasks[name])

    def on_skip(self, name, why):
        self._show()
        self.progress.start_task(self.tasks[name])
        self.progress.update(self.tasks[name], description=f"[dim]skipped: {why}[/]", completed=1)
        self.progress.stop_task(self.tasks[name])


class PlainStages(StageTimer):
    """Without a terminal (a CI log): one plain line as each stage starts and ends, to stderr;
    no spinner frames, no redrawn rows, nothing cut to a width."""

    def note(self, text):
        if text:
            click.echo(text, err=True)

    def on_start(self, name):
        click.echo(f"{name}: running", err=True)

    def on_end(self, name, ok, seconds):
        click.echo(f"{name}: {'done' if ok else 'failed'} in {seconds:.1f} s", err=True)

    def on_skip(self, name, why):
        click.echo(f"{name}: skipped: {why}", err=True)


def print_summary(console, result) -> None:
    """The summary table (plain `row: value` lines without a terminal), then where the reports are."""
    if not _isatty(sys.stdout):  # a log: whole lines, no box to wrap numbers in
        click.echo(f"deploykit deploy: {result.model_name}")
        for row, value in summary_rows(result):
            click.echo(f"  {row}: {value}")
    else:
        _print_table(console, result, summary_rows(result))
    html = result.report_dir / "report.html"
    click.echo(f"report: {html if html.exists() else result.report_dir}")
    click.echo(f"artifacts: {result.outdir}")


def summary_rows(result) -> list[tuple[str, str]]:
    """(row, value) pairs: target, fit, agreement, latency, arena, link efficiency, pass or fail."""
    from deploykit.deploy import summary

    f = summary(result)
    return [
        ("target", _target_text(result.target)),
        ("fit", _fit_text(result.fit)),
        ("agreement (vs TFLM host)", f"{_n(f['exact_fraction'], '.1%')} exact, "
                                     f"max {_n(f['max_abs_steps'], 'd')} int8 steps"),
        ("latency (simulated)" if f["latency_simulated"] else "latency",
         f"mean {_n(f['latency_us_mean'], ',.0f')} µs, p99 {_n(f['latency_us_p99'], ',.0f')} µs"),
        ("arena", f"{_n(f['arena_used'], ',d')} B used of {_n(f['arena_configured'], ',d')} B configured "
                  f"(recommended {_n(f['arena_recommended'], ',d')} B)"),
        ("link efficiency", f"{_n(f['link_efficiency'], '.2f')} ({_n(f['samples_per_s'], ',.0f')} samples/s)"),
        ("result", "PASS" if f["passed"] else "FAIL"),
    ]


def _n(value, spec: str) -> str:
    """Format a figure, or "n/a" when the report has none."""
    if value is None:
        return "n/a"
    return format(int(value) if spec.endswith("d") else value, spec)


def _target_text(t) -> str:
    if not t.virtual_board:
        return f"{t.board_id} on {t.port}"
    return f"virtual board ({t.board_id} profile)" + (", standing in: no board connected" if t.fallback else "")


def _fit_text(fit: dict) -> str:
    parts = []
    for label, used, total in (("flash", fit.get("flash_used"), fit.get("flash_total")),
                               ("RAM", fit.get("ram_used"), fit.get("ram_total"))):
        if used is not None and total:
            parts.append(f"{label} {used:,}/{total:,} B ({used / total:.0%})")
    return f"{', '.join(parts)} [{fit.get('source', '?')}]"


def _print_table(console, result, rows) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"deploykit deploy: {result.model_name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for row, value in rows:
        style = {"PASS": "green", "FAIL": "red"}.get(value, "")
        table.add_row(row, f"[{style}]{value}[/]" if style else escape(value))
    console.print(table)


def run_with_display(quiet: bool, call, stage_names=()):
    """Run `call(stages)` behind the stage display (or none with --quiet); print the summary."""
    from rich.console import Console

    from deploykit.errors import DeviceError, ThresholdFailed

    console = Console(stderr=False, highlight=False)
    if quiet:
        result = call(StageTimer())
    elif not _isatty(sys.stderr):
        result = call(PlainStages())
    else:
        with RichStages(Console(stderr=True), stage_names) as stages:
            result = call(stages)
    print_summary(console, result)
    if not result.report.get("samples"):  # nothing measured: the device failed, not the model
        raise DeviceError(f"no sample ran on the device ({result.report.get('samples_failed', 0)} failed); "
                          f"see {result.report_dir / 'report.md'}")
    if not result.passed:
        failed = failed_thresholds(result.report.get("thresholds"))
        raise ThresholdFailed(f"the HIL run failed: {'; '.join(failed) or 'see the report'}; "
                              f"see {result.report_dir / 'report.md'}")
    return result


def may_fall_back(quiet: bool) -> bool:
    """A person is watching: a terminal in and out, no --quiet, no CI variable (CI=true)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return not quiet and not ci and _isatty(sys.stdin) and _isatty(sys.stdout)


def _isatty(stream) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


@click.command("deploy")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--board", metavar="ID", help="Board id (see `deploykit boards`); default: the connected board. "
                              "With --port virtual: the board the virtual board impersonates.")
@click.option("-p", "--port", default="auto", show_default=True,
              help="Serial port or pyserial URL; auto finds the board; `virtual` for the virtual board. "
                   "With no board connected, only an interactive run falls back to the virtual board; "
                   "in CI (or --quiet, or no terminal) that is exit 3.")
@click.option("--profile", default=DEFAULT_PROFILE, hidden=True,  # old spelling of --board ID --port virtual
              help="The board the virtual board impersonates (cost model, RAM, flash).")
@click.option("--data", type=click.Path(path_type=Path),
              help="Test data (.npz/.npy/.csv); also the converter's test split.")
@click.option("--rep-data", type=click.Path(path_type=Path), help="Representative data for int8 calibration.")
@click.option("--label-column", type=LABEL_COLUMN, default=None, help=LABEL_COLUMN_HELP)
@click.option("--name", help="Model name (default: the file's).")
@click.option("--quantize", default=None, help="int8 (default), int8-float-io or float32; a .tflite is taken as it is.")
@click.option("--task", default=None, help="classification | regression | anomaly | none (default: inferred); "
                                          "kept in the manifest, as on convert.")
@click.option("--class-names", default=None, help="a,b,c or a labels file (one name per line), as on convert.")
@click.option("-o", "--outdir", "outdir", cls=Renamed, old=("--output",), type=click.Path(path_type=Path),
              default=Path("deploykit-out"),
              show_default=True, help="Directory for every stage's artifacts.")
@click.option("--limit", type=int, help="Run only the first N samples on the device.")
@click.option("--arena-size", type=int, help="Arena bytes (default: the manifest's projection + margin).")
@click.option("--arena-margin", type=float, default=10.0, show_default=True, help="Arena margin in percent.")
@click.option("--min-agreement", type=float, help="Fail below this exact-match fraction with TFLM on the host.")
@click.option("--max-latency-us", type=float, help="Fail above this p99 latency (µs).")
@click.option("--max-arena", type=int, help="Fail above this arena use (bytes).")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML, one case per threshold.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--no-pacing", is_flag=True,
              help="Virtual board only: no link pacing and no simulated inference time (as virtual-board).")
@boards_dir_option
def deploy(model, board, port, profile, data, rep_data, label_column, name, quantize, task, class_names, outdir,
           limit, arena_size, arena_margin, min_agreement, max_latency_us, max_arena, junit, quiet, no_pacing):
    """Convert, render, build, flash and test MODEL in one go."""
    from deploykit.deploy import deploy as run_deploy
    from deploykit.model.metrics import parse_class_names

    thresholds = {k: v for k, v in (("min_agreement", min_agreement), ("max_latency_us", max_latency_us),
                                    ("max_arena", max_arena)) if v is not None}
    run_with_display(quiet, lambda stages: run_deploy(
        model, outdir, board=board, port=port, profile=profile, data=data, rep_data=rep_data, name=name,
        quantize=quantize, label_column=label_column, limit=limit, task=task,
        class_names=parse_class_names(class_names), thresholds=thresholds,
        arena_size=arena_size, arena_margin=arena_margin, junit=junit, stages=stages,
        fallback=may_fall_back(quiet), pacing=not no_pacing))
