"""`deploykit farm run`: one test set sharded over many boards (labgrid places), one merged report.

Thin: acquire the places (deploykit.link.labgrid_place), call
deploykit.harness.farm.run_farm, release the places however it ends, print a summary.
"""

from __future__ import annotations

import contextlib

import click

from deploykit.commands import LABEL_COLUMN, LABEL_COLUMN_HELP, failed_thresholds
from deploykit.commands.boards import boards_dir_option
from deploykit.errors import BadInput, RigError, ThresholdFailed


@click.group("farm")
def farm():
    """Run one test set over many boards on a labgrid farm."""


@farm.command("run")
@click.option("-m", "--manifest", "manifest", required=True, type=click.Path(dir_okay=True),
              help="manifest.json written by `deploykit convert` (or its directory).")
@click.option("--place", "places", multiple=True, help="A labgrid place to run on (repeatable).")
@click.option("--match", "match", default=None, help="Every place with this tag, e.g. board=esp32dev.")
@click.option("-p", "--port", "ports", multiple=True, help="A pyserial URL to run on without labgrid (repeatable).")
@click.option("--coordinator", default=None, help="labgrid coordinator HOST:PORT (default: $LG_COORDINATOR).")
@click.option("--board", metavar="ID", default=None, help="Board kind every place must be (and the default baud).")
@click.option("--matrix", is_flag=True, help="Places of several board kinds: each kind runs the whole set.")
@click.option("--baud", type=int, default=None, help="Line rate (default: the board kind's).")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Test data (.npz x[,y], .npy, .csv); default: the test split the converter recorded.")
@click.option("--label-column", type=LABEL_COLUMN, default=None, help=LABEL_COLUMN_HELP)
@click.option("--limit", type=int, default=None, help="Only the first N samples.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Warm-up inferences per board, not counted.")
@click.option("-o", "--outdir", default="farm-report", show_default=True, help="Directory for results and reports.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue DIR/results.jsonl when it was written for this model, data and board kind.")
@click.option("--min-agreement", type=float, default=None, help="Fail unless agreement.tflm_host.exact_fraction >= F.")
@click.option("--max-latency-us", type=float, default=None, help="Fail unless latency.us.p99 <= F.")
@click.option("--max-arena", type=int, default=None, help="Fail unless arena.used <= N bytes.")
@boards_dir_option
def run(manifest, places, match, ports, coordinator, board, matrix, baud, data, label_column, limit, warmup, outdir,
        junit, resume, min_agreement, max_latency_us, max_arena):
    """Shard the samples over the places, run them in parallel, merge one results.jsonl and report."""
    from deploykit.harness.farm import Place, Thresholds, run_farm

    if sum(bool(x) for x in (places, match, ports)) != 1:
        raise click.UsageError("give --place (repeatable), --match TAG=VALUE or --port (repeatable)")
    options = dict(data=data, label_column=label_column, limit=limit, warmup=warmup, outdir=outdir, junit=junit,
                   resume=resume,
                   matrix=matrix, baud=baud, thresholds=Thresholds(min_agreement, max_latency_us, max_arena))
    if ports:
        report = run_farm(manifest, [Place(url, url, board) for url in ports], **options)
    else:
        with _leases(places, match, board, coordinator) as leases:
            click.echo("acquired " + ", ".join(f"{x.name} ({x.url})" for x in leases), err=True)
            report = run_farm(manifest, [Place(x.name, x.url, x.board) for x in leases], **options)
    click.echo(summary(report))
    if not report.passed:
        failed = failed_thresholds(report.get("thresholds"))
        raise ThresholdFailed(f"the farm run did not pass: {'; '.join(failed) or 'a place failed'}; "
                              f"see {report['files']['md']}")


@contextlib.contextmanager
def _leases(places, match, board, coordinator):
    """Acquire every place (all or none), release them all however the block ends."""
    from deploykit.link.labgrid_place import CoordinatorClient, interrupts_raise, releasing
    with CoordinatorClient(coordinator) as coord, interrupts_raise():
        names = list(places) or _matching(coord, match)
        with releasing(coord, []) as leases:
            for name in names:
                leases.append(coord.acquire(name, board))
            yield leases


def _matching(coord, match: str) -> list[str]:
    """Places carrying the tag and free (or ours from a killed run); others' places are skipped."""
    key, sep, value = match.partition("=")
    if not sep or not key:
        raise BadInput(f"--match {match!r} is not TAG=VALUE; write e.g. --match board=esp32dev")
    names = coord.matching({key: value})
    if not names:
        raise BadInput(f"no place on the labgrid coordinator at {coord.address} is tagged {key}={value}")
    free = [n for n in names if coord.session.places[n].acquired in (None, coord.me)]
    if not free:
        raise RigError(f"every place tagged {key}={value} ({', '.join(names)}) is acquired by someone else; "
                       "wait, or name places with --place")
    return free


def summary(report) -> str:
    """A few lines: the merged figures, then one line per place (or per board kind)."""
    if "matrix" in report:
        lines = [f"board kinds compared: {', '.join(report['matrix'])}"]
        for kind, col in report["matrix"].items():
            lines.append(f"  {kind}: {col['samples']} samples on {col['places']} places, exact match "
                         f"{col['exact_fraction']}, latency p50 {col['latency_us_p50']} us")
        return "\n".join(lines + [f"report: {report['files']['md']}"])
    from deploykit.commands.hil import summary as hil_summary
    lines = [hil_summary(report)]
    for p in report["farm"]["places"]:
        us = (p["latency"].get("us") or {}).get("p50")
        state = f"FAILED ({p['failed']})" if p["failed"] else "ok"
        lines.append(f"  {p['place']}: {p['samples']} samples, latency p50 "
                     f"{'-' if us is None else f'{us:.0f}'} us, {state}")
    return "\n".join(lines)
