"""`deploykit hil run` as a library call: stream the test data, measure, report.

run_hil() loads the manifest and the data (quantized as TFLite does), opens the device
(handshake, model-hash check), runs warm-up inferences that are not counted, streams the
samples not yet in DIR/results.jsonl (appended and flushed as they arrive, so a killed run
resumes where it stopped: only a run of the same model, data, board and firmware resumes),
comparing the device's outputs with TFLM on the host, LiteRT on the desktop and the float
model (predicted before streaming) as rows are read back or arrive, and writes
report.json/.md/.html and, when asked, junit.xml with one case per threshold. DIR is
locked for the whole run. Rows are never held in memory: figures that need every value
come from a second pass over results.jsonl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploykit.atomic import ensure_writable_dir
from deploykit.errors import BadInput, DeviceError
from deploykit.harness.inputs import load_inputs
from deploykit.harness.outdir import locked_outdir
from deploykit.harness.results import ResultsFile, Rows, run_header
from deploykit.link.session import DeviceSession, SampleFailure
from deploykit.model import manifest as manifest_mod
from deploykit.report import Thresholds, build_report, evaluate, write_reports
from deploykit.report.build import new_aggregator
from deploykit.report.context import add_context
from deploykit.report.stats import throughput

if TYPE_CHECKING:
    from deploykit.protocol import Hello
    from deploykit.report.aggregate import RowAggregator

DEFAULT_WARMUP = 3
DEFAULT_BAUD = 115200
DEFAULT_OUTDIR = "hil-report"

__all__ = ["DEFAULT_WARMUP", "Report", "Thresholds", "run_hil"]


class Report(dict):
    """report.json's content; `.paths` names the files written, `.passed` the verdict."""

    @property
    def paths(self) -> dict:
        return {k: Path(v) for k, v in self.get("files", {}).items()}

    @property
    def passed(self) -> bool:
        return bool(self.get("passed", True))


def run_hil(manifest_path, port: str, baud: int | None = None, data=None, limit: int | None = None,
            warmup: int = DEFAULT_WARMUP, outdir=DEFAULT_OUTDIR, junit=None,
            progress: Callable[[int, int], None] | None = None,
            thresholds: Thresholds | None = None, float_reference: bool = True,
            session_options: dict | None = None, board: str | None = None, resume: bool = True,
            note: str | None = None, diagnostics=None, build_json=None, label_column=None) -> Report:
    """Run the HIL test and write its reports; see the module docstring.

    `board` (a boards/ id), when given, sets the default baud and must be the board the
    device's HELLO names; without it the baud defaults to the board `--port auto` found,
    else 115200. `note` (e.g. that the virtual board stands in) goes into every report's title.
    `build_json` (the build.json of the flashed firmware's build, when there is one) gives
    the report's fit section its measured flash and RAM; without it they are estimated.
    `label_column`: the labels' column of a CSV `data` (index or header name).
    `progress(done, total)` is called as samples arrive (the CLI draws its bar with it).
    The output folder is locked for the whole run (a second run into it is refused);
    results.jsonl there is resumed only when it is this run's (results.py).
    """
    started, started_at = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    manifest = manifest_mod.load(manifest_path)
    inputs = load_inputs(manifest, data, limit, label_column)
    if warmup < 0:
        raise BadInput(f"--warmup {warmup} must be 0 or more")
    if baud is not None and baud <= 0:
        raise BadInput(f"--baud {baud} must be a positive line rate, e.g. 115200")
    board_baud = _board_baud(board)  # an unknown --board fails here, before any port is opened
    from deploykit.link.serial_handlers.protocol_virtual import VIRTUAL_PORT, url_for
    if port == VIRTUAL_PORT:  # the virtual board standing in for --board, as in deploy
        port = url_for(manifest.path, board)
    from deploykit.toolchain.devices import resolve_target
    url, found = resolve_target(port, board)
    baud = int(baud or board_baud or _board_baud(found) or DEFAULT_BAUD)
    with locked_outdir(Path(outdir)) as out:
        session = DeviceSession(url, baud, expected_sha256=manifest.sha256, **(session_options or {}))
        try:
            run = _measure(session, manifest, inputs, out, junit, warmup, progress, board, resume, float_reference,
                           diagnostics)
        except DeviceError as exc:  # the give-up and handshake errors name the frame trace
            session.link.trace.named_in(exc)
            raise
        report = _report(manifest, inputs, run, baud)
        report.update(run.diagnostics or {})  # op_timing / layer_diff (harness/diagnostics.py)
        report["link"] = link_info(board or found or run.hello.board_id)
        add_context(report, manifest, run.hello, url, build_json)
        if note:
            report["note"] = note
        report["started_at"], report["duration_s"] = started_at, round(time.monotonic() - started, 3)
        report["thresholds"] = evaluate(report, thresholds)
        report["passed"] = report["samples"] > 0 and all(c["passed"] for c in report["thresholds"])
        write_reports(report, out, junit)
    return Report(report)


@dataclass
class _Run:
    """What a session measured: the rows of this data (read back from results.jsonl), how the link fared."""

    rows: Rows
    refs: dict
    aggregator: RowAggregator | None
    resumed: int
    resumed_from: str | None
    measured: int
    seconds: float
    hello: Hello
    faults: dict
    logs: list
    diagnostics: dict | None = None


def _measure(session, manifest, inputs, outdir: Path, junit, warmup: int, progress,
             board: str | None, resume: bool, float_reference: bool, diagnostics=None) -> _Run:
    """Open the device, resume (if asked) or start results.jsonl, warm up, stream what is missing."""
    from deploykit.harness import diagnostics as diag
    with session:
        _check_device(session.hello, manifest, board, session.url)
        if diagnostics and diagnostics.wanted:
            diag.require(session.hello, diagnostics, session.url)
        _prepare_outputs(outdir, junit)
        header = run_header(manifest.sha256, inputs.sha256, session.hello)
        results = ResultsFile(outdir / "results.jsonl", header, len(inputs), resume)
        results.check()  # another run's file is refused before the references take their time
        refs = _references(manifest, inputs, float_reference)
        aggregator = new_aggregator(manifest, inputs, refs)
        results.on_row = aggregator.add  # each kept row once, as it is read back or arrives
        with results:
            if not results.done.all():
                _warm_up(session, inputs, warmup)
            measured, seconds = _stream(session, inputs, results, progress)
            extra = None
            if diagnostics and diagnostics.wanted:  # a diagnostic run: the rows by index, read back once
                extra = diag.run(session, manifest, inputs, {r["index"]: r for r in results.rows()}, diagnostics)
    return _Run(rows=results.rows(), refs=refs, aggregator=aggregator, resumed=results.resumed,
                resumed_from=(results.earlier or {}).get("started_at"), measured=measured,
                seconds=seconds, hello=session.hello, faults=session.faults.as_dict(),
                logs=session.logs[:50], diagnostics=extra)


def _report(manifest, inputs, run: _Run, baud: int) -> dict:
    """The report dict: figures from the rows against the desktop references."""
    hello = run.hello
    report = build_report(
        manifest=manifest, inputs=inputs, rows=run.rows, refs=run.refs, aggregator=run.aggregator,
        hello=hello, faults=run.faults, estimate=_arena_estimate(manifest, hello.board_id),
        throughput=throughput(run.measured, run.seconds, baud, hello.input_record_bytes,
                              hello.output_record_bytes),
        resumed=run.resumed, resumed_from=run.resumed_from)
    report["device_log"] = run.logs
    return report


def link_info(board_id: str | None) -> dict:
    """The serial link as the board file has it: kind, bytes per second and where that comes from."""
    from deploykit.firmware.boards import board_table
    board = board_table().get(board_id or "")
    if board is None:
        return {"board": board_id, "kind": "unknown", "bytes_per_s": None, "source": "no board file"}
    rate, source = board.link_rate
    return {"board": board.id, "kind": board.link, "bytes_per_s": rate, "source": source,
            "nominal_baud": board.baud}


def _board_baud(board_id: str | None) -> int | None:
    if not board_id:
        return None
    from deploykit.firmware.boards import load_board
    return load_board(board_id).baud


def _prepare_outputs(outdir: Path, junit) -> None:
    """Make the output directories now, so a bad path fails before the run, not after it."""
    if junit:
        try:
            ensure_writable_dir(Path(junit).parent)
        except BadInput:
            raise BadInput(f"cannot write --junit {junit}: {Path(junit).parent} is not a writable "
                           "directory; choose another path") from None
    ensure_writable_dir(outdir)


def _check_device(hello, manifest, board: str | None, url: str) -> None:
    """The whole HELLO against the manifest and the board asked for: see link/identity.py."""
    from deploykit.link.identity import check
    check(hello, manifest, board, url)


def _warm_up(session, inputs, warmup: int) -> None:
    """Run the first `warmup` samples once; their results are not kept."""
    k = min(warmup, len(inputs))
    if k:
        for _ in session.stream(inputs.records(range(k))):
            pass


def _stream(session, inputs, results, progress) -> tuple[int, float]:
    """Stream the samples without a row yet; return (how many, seconds). Rows go to disk only;
    `progress(done, total)` hears of every batch."""
    todo = np.flatnonzero(~results.done)
    if not todo.size:
        return 0, 0.0
    start = time.monotonic()
    if progress:
        progress(len(inputs) - len(todo), len(inputs))
    done = 0
    for batch in session.stream_batches(inputs.records(todo)):
        for item in batch:  # rows that arrived together are flushed together
            results.append(_row(session, int(todo[item.record]), item), flush=False)
        results.flush()
        done += len(batch)
        if progress:
            progress(len(inputs) - len(todo) + done, len(inputs))
    seconds = time.monotonic() - start
    results.sync()
    return len(todo), seconds


def _row(session, index: int, item) -> dict:
    if isinstance(item, SampleFailure):
        return {"index": index, "error": item.reason}
    outputs = session.output_lists(item.outputs)
    return {"index": index, "outputs": outputs, "cycles": item.cycles, "us": item.micros,
            "round_trip_us": round(item.round_trip_s * 1e6, 1)}


def _references(manifest, inputs, with_float: bool) -> dict:
    """TFLM-host, LiteRT and (when asked and available) float predictions for every sample."""
    from deploykit.model.reference import reference_predictions
    return reference_predictions(manifest, inputs.reference_inputs(), include_float=with_float)


def _arena_estimate(manifest, board_id: str) -> int | None:
    """The manifest's projection for the device's board class, else the host figure."""
    from deploykit.firmware.boards import load_board
    try:  # a board deploykit has no file for, or a manifest without its projection
        return manifest.arena_projection(load_board(board_id).arena_class, board_id)
    except BadInput:
        value = (manifest["arena"] or {}).get("host_recorded")
        return int(value) if value is not None else None
