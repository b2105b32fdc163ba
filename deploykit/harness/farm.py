"""A farm run: one test set sharded over several boards, merged into one results.jsonl and one report.

run_farm() takes places (a name, a pyserial URL, a board kind) that the caller has already
acquired, opens one DeviceSession per place in a thread of its own and hands out the
samples not yet in DIR/results.jsonl in small chunks from one queue: a fast board takes
more, and a place that fails (exporter gone, board silent, wrong firmware) puts its
unfinished chunk back for the others (a vanished port gets REOPEN_WITHIN seconds to
return). Every row names the place and board that measured it. Rows are appended as they
arrive, so a killed farm run resumes every shard.

Places of different board kinds are refused unless `matrix` is set; then each kind gets
the whole set in DIR/<kind>/ and DIR/report.* compares the kinds column by column.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploykit.errors import BadInput, RigError
from deploykit.harness import run as single
from deploykit.harness.inputs import load_inputs
from deploykit.harness.outdir import locked_outdir
from deploykit.harness.results import SCHEMA, ResultsFile, RunHeader
from deploykit.link.session import DeviceSession, Timeouts
from deploykit.model import manifest as manifest_mod
from deploykit.report import Thresholds, build_report, evaluate
from deploykit.report.farm import place_summary, write_farm_reports, write_matrix_reports
from deploykit.report.stats import throughput

MAX_CHUNK = 32
REOPEN_WITHIN = 5.0   # seconds a place's vanished port may take to come back before its samples move on


@dataclass
class Place:
    """One board to run on: a name (the labgrid place), its pyserial URL and its board kind."""

    name: str
    url: str
    board: str | None = None


@dataclass
class _Shard:
    """What one place did in this run."""

    place: Place
    hello: object = None
    faults: dict = field(default_factory=dict)
    measured: int = 0
    error: str | None = None
    logs: list = field(default_factory=list)


class _Queue:
    """Sample indices still to run, handed out in chunks; a failed place's chunk comes back."""

    def __init__(self, todo: list[int], chunk: int):
        self.todo = deque(todo)
        self.chunk = chunk
        self.busy = 0
        self.stopped = False
        self.cond = threading.Condition()

    def take(self) -> list[int] | None:
        """The next chunk; waits while others still run chunks that may come back; None when done."""
        with self.cond:
            while not self.todo and self.busy and not self.stopped:
                self.cond.wait(0.2)
            if not self.todo or self.stopped:
                return None
            self.busy += 1
            return [self.todo.popleft() for _ in range(min(self.chunk, len(self.todo)))]

    def done(self, unfinished: Iterable[int] = ()) -> None:
        with self.cond:
            self.busy -= 1
            self.todo.extendleft(reversed(list(unfinished)))
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


def run_farm(manifest_path, places: list[Place], data=None, limit: int | None = None,
             warmup: int = single.DEFAULT_WARMUP, outdir=single.DEFAULT_OUTDIR, junit=None,
             thresholds: Thresholds | None = None, float_reference: bool = True, resume: bool = True,
             matrix: bool = False, baud: int | None = None, session_options: dict | None = None,
             chunk: int | None = None, label_column=None) -> single.Report:
    """Run the test set over `places` and write one merged report; see the module docstring."""
    _check_places(places, matrix)
    manifest = manifest_mod.load(manifest_path)
    inputs = load_inputs(manifest, data, limit, label_column)
    if warmup < 0:
        raise BadInput(f"--warmup {warmup} must be 0 or more")
    kinds = _by_kind(places)
    options = dict(warmup=warmup, float_reference=float_reference, resume=resume, baud=baud,
                   session_options=session_options or {}, chunk=chunk, thresholds=thresholds)
    if not matrix:
        kind, group = next(iter(kinds.items()))
        report = _run_kind(manifest, inputs, kind, group, Path(outdir), junit, **options)
        return single.Report(report)
    reports: dict[str, Any] = {}   # kind -> its report, or the exception that ended it
    threads = [threading.Thread(target=lambda k=k, g=g: reports.__setitem__(
        k, _guarded(_run_kind, manifest, inputs, k, g, Path(outdir) / k, None, **options))) for k, g in kinds.items()]
    _join_all(threads)
    for report in reports.values():
        if isinstance(report, BaseException):
            raise report
    return single.Report(write_matrix_reports(reports, manifest, inputs, Path(outdir), junit))


def _check_places(places: list[Place], matrix: bool) -> None:
    if not places:
        raise BadInput("no places to run on; give --place (repeatable), --match board=ID or --port")
    names = [p.name for p in places]
    if len(set(names)) != len(names):
        raise BadInput(f"a place is given twice ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                       "give each place once")
    kinds = {p.board for p in places}
    if matrix and None in kinds:
        untagged = ", ".join(p.name for p in places if p.board is None)
        raise BadInput(f"--matrix needs every place's board kind (tag board=ID); {untagged} has none")
    tagged = {k for k in kinds if k is not None}
    if not matrix and len(tagged) > 1:
        raise BadInput(f"the places are of different board kinds ({', '.join(sorted(tagged))}); "
                       "run one kind at a time, or pass --matrix to give each kind the whole set")


def _by_kind(places: list[Place]) -> dict:
    kinds: dict = {}
    known = next((p.board for p in places if p.board), None)
    for p in places:
        kinds.setdefault(p.board or known, []).append(p)
    return kinds


def _run_kind(manifest, inputs, kind, places, outdir: Path, junit, *, warmup, float_reference, resume, baud,
              session_options, chunk, thresholds) -> dict:
    """Run the whole set over places of one board kind; write and return its report."""
    baud = int(baud or single._board_baud(kind) or single.DEFAULT_BAUD)
    with locked_outdir(outdir) as out:
        return _run_locked(manifest, inputs, kind, places, out, junit, warmup=warmup,
                           float_reference=float_reference, resume=resume, baud=baud,
                           session_options=session_options, chunk=chunk, thresholds=thresholds)


def _farm_header(manifest, inputs, kind) -> RunHeader:
    """results.jsonl's header for a farm: the board kind stands for the device (each place's
    HELLO is checked against the manifest as it opens; arena and firmware id are per place)."""
    return {"schema": SCHEMA, "model_sha256": manifest.sha256, "data_sha256": inputs.sha256,
            "board_id": kind, "arena_configured": None, "firmware_id": None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _run_locked(manifest, inputs, kind, places, outdir: Path, junit, *, warmup, float_reference, resume, baud,
                session_options, chunk, thresholds) -> dict:
    single._prepare_outputs(outdir, junit)
    shards = [_Shard(p) for p in places]
    with ResultsFile(outdir / "results.jsonl", _farm_header(manifest, inputs, kind), len(inputs), resume) as results:
        todo = [i for i in range(len(inputs)) if not results.done[i]]
        size = chunk or max(1, min(MAX_CHUNK, math.ceil(len(todo) / (4 * len(places)))))
        queue, lock = _Queue(todo, size), threading.Lock()
        start = time.monotonic()
        threads = [threading.Thread(target=_work, name=f"farm {s.place.name}", daemon=True,
                                    args=(s, manifest, inputs, kind, baud, warmup, session_options, queue,
                                          results, lock)) for s in shards]
        try:
            _join_all(threads)
        finally:
            queue.stop()   # interrupted: no new chunks; the running ones end (their rows are kept)
            for t in threads:
                if t.ident is not None:
                    t.join(10)
        seconds = time.monotonic() - start
        results.sync()
        rows, kept, resumed = results.rows(), int(results.done.sum()), results.resumed
        resumed_from = (results.earlier or {}).get("started_at")
    missing = len(inputs) - kept
    if missing:
        failed = "; ".join(f"{s.place.name}: {s.error}" for s in shards if s.error) or "no place finished"
        raise RigError(f"{missing} of {len(inputs)} samples were not measured: every place failed ({failed}); "
                       f"fix the places and run again: the {kept} rows in {outdir / 'results.jsonl'} are kept")
    return _report(manifest, inputs, kind, shards, rows, (resumed, resumed_from), seconds, baud,
                   float_reference, thresholds, outdir, junit)


def _work(shard: _Shard, manifest, inputs, kind, baud, warmup, session_options, queue: _Queue, results, lock):
    """One place's thread: open, check, warm up, then run chunks until the queue is empty."""
    options = dict(session_options)
    options["timeouts"] = replace(options.get("timeouts") or Timeouts(reopen_within=REOPEN_WITHIN))  # adapts: one each
    session = DeviceSession(shard.place.url, baud, expected_sha256=manifest.sha256, **options)
    try:
        with session:
            single._check_device(session.hello, manifest, kind or shard.place.board, shard.place.url)
            shard.hello = session.hello
            single._warm_up(session, inputs, warmup)
            while (indices := queue.take()) is not None:
                left = set(indices)
                try:
                    for batch in session.stream_batches(inputs.records(indices)):
                        with lock:
                            for item in batch:
                                index = indices[item.record]
                                results.append(_row(session, shard.place, index, item), flush=False)
                                left.discard(index)
                            results.flush()
                        shard.measured += len(batch)
                finally:
                    queue.done([i for i in indices if i in left])
    except Exception as exc:  # noqa: BLE001 - a place failing is reported, its samples go to the others
        shard.error = _one_line(exc)
    finally:
        shard.faults = session.faults.as_dict()
        shard.logs = session.logs[:20]


def _row(session, place: Place, index: int, item) -> dict:
    row = single._row(session, index, item)
    row["place"] = place.name
    row["board"] = session.hello.board_id
    return row


def _report(manifest, inputs, kind, shards, rows, resumed, seconds, baud, float_reference, thresholds,
            outdir, junit) -> dict:
    hello = next((s.hello for s in shards if s.hello is not None), None)
    if hello is None:
        raise RigError("no place answered (" + "; ".join(f"{s.place.name}: {s.error}" for s in shards) + ")")
    measured = sum(s.measured for s in shards)
    faults = {k: sum(s.faults.get(k, 0) for s in shards) for k in shards[0].faults or {}}
    report = build_report(
        manifest=manifest, inputs=inputs, rows=rows, refs=single._references(manifest, inputs, float_reference),
        hello=hello, faults=faults, estimate=single._arena_estimate(manifest, hello.board_id),
        throughput=throughput(measured, seconds, baud, hello.input_record_bytes, hello.output_record_bytes),
        resumed=resumed[0], resumed_from=resumed[1])
    report["device_log"] = [f"{s.place.name}: {line}" for s in shards for line in s.logs][:50]
    report["farm"] = {"board": kind, "places": [place_summary(s.place, s.measured, s.error, s.faults, rows)
                                                for s in shards],
                      "failed": [{"place": s.place.name, "error": s.error} for s in shards if s.error]}
    report["thresholds"] = evaluate(report, thresholds)
    report["passed"] = report["samples"] > 0 and all(c["passed"] for c in report["thresholds"])
    write_farm_reports(report, outdir, junit)
    return report


def _join_all(threads) -> None:
    """Start and join threads; Ctrl-C in the main thread still reaches us between joins."""
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)


def _guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller in its own thread
        return exc


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
