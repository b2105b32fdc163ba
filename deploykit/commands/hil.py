"""`deploykit hil run`: stream test data to a board, measure, write reports.

Thin: parse the options, call deploykit.harness.run.run_hil, print a summary. Exit 1
when a threshold fails, 2 on bad input (raised as BadInput by the library: also a locked
output folder, or results.jsonl of another run without --no-resume), 3 when the rig fails
(no sample ran, the device or link failed, the disk is full).
"""

from __future__ import annotations

import click

from deploykit.commands import LABEL_COLUMN, LABEL_COLUMN_HELP, counters, failed_thresholds
from deploykit.commands.boards import boards_dir_option
from deploykit.errors import DeviceError, ThresholdFailed


@click.group("hil")
def hil():
    """Hardware-in-the-loop runs against a board (or the virtual board)."""


@hil.command("run")
@click.option("-m", "--manifest", "manifest", required=True, type=click.Path(dir_okay=True),
              help="manifest.json written by `deploykit convert` (or its directory).")
@click.option("-p", "--port", default=None,
              help="Serial port or pyserial URL (/dev/ttyACM0, COM3, rfc2217://h:p, socket://h:p, virtual://M), "
                   "`auto`, or `virtual` (the virtual board standing in for --board).")
@click.option("--place", default=None, help="A labgrid place to acquire and run on (instead of --port).")
@click.option("--coordinator", default=None, help="labgrid coordinator HOST:PORT (default: $LG_COORDINATOR).")
@click.option("--board", metavar="ID", default=None,
              help="Board id (boards/ID.toml): sets the default --baud; the device must announce this board.")
@click.option("--baud", type=int, default=None,
              help="Line rate (default: the --board's, or the board --port auto found, else 115200).")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Test data (.npz x[,y], .npy, .csv); default: the test split the converter recorded.")
@click.option("--label-column", type=LABEL_COLUMN, default=None, help=LABEL_COLUMN_HELP)
@click.option("--limit", type=int, default=None, help="Only the first N samples.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Warm-up inferences, not counted.")
@click.option("-o", "--outdir", default="hil-report", show_default=True, help="Directory for results and reports.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None,
              help="Write JUnit XML here (one case per threshold).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue DIR/results.jsonl of an earlier run of this model, data, board and firmware "
                   "(one of another run is refused); --no-resume starts it afresh.")
@click.option("--quiet", is_flag=True, help="No progress bar (CI).")
@click.option("--min-agreement", type=float, default=None, help="Fail unless agreement.tflm_host.exact_fraction >= F.")
@click.option("--max-latency-us", type=float, default=None, help="Fail unless latency.us.p99 <= F.")
@click.option("--max-arena", type=int, default=None, help="Fail unless arena.used <= N bytes.")
@click.option("--op-timing", type=int, default=None, metavar="N",
              help="Profile N records spread over the set: per-operator cycles (firmware rendered with --diagnostics).")
@click.option("--layer-diff", default=None, metavar="K|auto",
              help="Compare every operator's output on record K (or `auto`: the first 3 records that differ) "
                   "with TFLM on the host.")
@click.option("--timed-loop", "timed_loop", type=float, default=None, metavar="SECONDS",
              help="Have the device rerun one record back to back for at least SECONDS, five times, and report "
                   "the median per-inference time (firmware rendered with --diagnostics).")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Write every frame both ways, timestamped, to FILE.")
@boards_dir_option
def run(manifest, port, place, coordinator, board, baud, data, limit, warmup, outdir, junit, resume, quiet,
        min_agreement, max_latency_us, max_arena, op_timing, layer_diff, trace, label_column, timed_loop):
    """Stream test data to the device and report agreement, accuracy, latency and arena."""
    from deploykit.commands.display import sample_progress
    from deploykit.harness.diagnostics import DiagnosticsOptions
    from deploykit.harness.run import Thresholds, run_hil

    if bool(port) == bool(place):
        raise click.UsageError("give either --port or --place (a labgrid place)")
    options = dict(baud=baud, data=data, limit=limit, warmup=warmup, outdir=outdir, junit=junit,
                   resume=resume, thresholds=Thresholds(min_agreement, max_latency_us, max_arena),
                   diagnostics=DiagnosticsOptions.parse(op_timing, layer_diff, timed_loop),
                   session_options={"trace": trace} if trace else None)
    with sample_progress(quiet) as progress:
        options["progress"] = progress
        if place:
            from deploykit.link.labgrid_place import place_lease
            with place_lease(place, board, coordinator) as lease:
                click.echo(f"acquired place {lease.name} ({lease.url})", err=True)
                report = run_hil(manifest, lease.url, board=board or lease.board, label_column=label_column,
                                 **options)
        else:
            report = run_hil(manifest, port, board=board, label_column=label_column, **options)
    _finish(report)


def _finish(report) -> None:
    """Print the summary; a failed threshold (or no result at all) is exit 1."""
    click.echo(summary(report))
    if not report["samples"]:  # nothing measured: the rig failed (exit 3), not a threshold
        raise DeviceError(f"no sample produced a result on the device ({report['samples_failed']} "
                          f"failed); see {report['files']['md']}")
    if not report.passed:
        raise ThresholdFailed("threshold failed: " + "; ".join(failed_thresholds(report["thresholds"])))


def _per_output(report) -> str:
    """" (per output: 1.0000, 0.9800)" for a model with several outputs, else nothing."""
    fractions = [(o.get("agreement") or {}).get("tflm_host", {}).get("exact_fraction")
                 for o in report.get("outputs") or []]
    return f" (per output: {', '.join('-' if f is None else f'{f:.4f}' for f in fractions)})" if fractions else ""


def summary(report) -> str:
    """A few lines for the terminal; the files hold the rest."""
    from deploykit.report.markdown import resumed_line
    agree = report["agreement"].get("tflm_host", {})
    lat = (report["latency"].get("us") or {})
    thr = report["throughput"]
    eff = thr.get("link_efficiency")
    lines = [f"{report['samples']} samples on {report['device']['board_id']}"
             f"{' (simulated)' if report['simulated'] else ''}: "
             f"exact match with TFLM host {agree.get('exact_fraction', float('nan')):.4f}{_per_output(report)}, "
             f"latency p50 {lat.get('p50', float('nan')):.0f} us, arena {report['arena']['used']} B",
             (f"throughput {thr['samples_per_s']:,.0f} samples/s" if thr.get("samples_per_s")
              else "throughput not measured (no sample streamed in this run)")
             + (f", link efficiency {eff:.2f}" if eff else "")
             + f"; link faults: {counters(report['faults'])}",
             f"report: {report['files']['html']}"]
    loop = report.get("timed_loop")
    if loop:
        lines.insert(1, f"timed loop: median {loop['median_us']:,.2f} us per inference over {len(loop['runs'])} "
                        f"loops of >= {loop['seconds']:g} s ({', '.join(map(str, loop['iterations']))} inferences)")
    resumed = resumed_line(report)
    if resumed:
        lines.insert(1, f"resumed: {resumed}")
    return "\n".join(lines)
