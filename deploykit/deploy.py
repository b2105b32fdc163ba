"""`deploy`: convert → render → build → flash → HIL run → report, in one call.

Every stage leaves its artifacts under one output directory:

    OUT/model/      model.tflite + manifest.json          (convert)
    OUT/firmware/   the PlatformIO project, build.log, build.json, upload.log
    OUT/hil/        results.jsonl, report.json/.md/.html  (harness)
    OUT/deploy.json what ran, on what, how long each stage took, the summary figures

With `port="virtual"` (or the older `board="virtual"`) build and flash are skipped and the
HIL stage runs against the virtual board impersonating `profile` (or the `board` named
with `port="virtual"`), so the same call works on any machine. "virtual" means the virtual
board (deploykit/virtual_board/) wherever it appears: the `--port virtual` spelling
(VIRTUAL_PORT), the board file it impersonates by default (boards/virtual.toml,
DEFAULT_PROFILE), a DeployTarget's `virtual_board` flag. When no board is connected
the virtual board stands in only if the caller allows it (`fallback=True`: the CLI does
so for a person at a terminal, never in CI or with --quiet), and then the summary, the
report title and junit.xml say so; otherwise no board is NoBoardFound (exit 3), since a
CI job that silently measured the virtual board would pass without testing the hardware.
The stages are the other modules' public functions; this module only sequences them,
times them and summarises.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import BadInput, NoBoardFound
from deploykit.link.serial_handlers.protocol_virtual import VIRTUAL_PORT

DEFAULT_PROFILE = "virtual"   # boards/virtual.toml: the virtual board as itself (virtual_board.device.DEFAULT_BOARD)
FALLBACK_NOTE = "virtual board standing in: no board connected"
STAGES = ("convert", "render", "build", "flash", "hil")


@dataclass
class DeployTarget:
    """Where the model goes: a board id and its port, or the virtual board and its profile."""

    board_id: str
    port: str | None
    virtual_board: bool  # the target is the virtual board (no build, no flash)
    note: str = ""
    fallback: bool = False  # the virtual board stands in because no board was found


@dataclass
class DeployResult:
    """What one deploy produced; `summary()` gives the figures of the CLI's table."""

    outdir: Path
    target: DeployTarget
    manifest_path: Path
    project_dir: Path
    report_dir: Path
    fit: dict
    report: dict
    model_name: str = ""
    build: dict | None = None
    flash: dict | None = None
    timings: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.report.get("passed", True))

    def to_dict(self) -> dict:
        return {"outdir": str(self.outdir), "model": self.model_name, "board": self.target.board_id,
                "virtual_board": self.target.virtual_board, "fallback": self.target.fallback,
                "port": self.target.port, "note": self.target.note, "manifest": str(self.manifest_path),
                "project": str(self.project_dir), "report_dir": str(self.report_dir), "fit": self.fit,
                "build": self.build, "flash": self.flash, "timings_s": self.timings,
                "passed": self.passed, "summary": summary(self)}


# --------------------------------------------------------------------------- stage timing

class StageTimer:
    """Times each stage; a display (the CLI's) overrides the `on_*` hooks to show progress."""

    def __init__(self):
        self.timings: dict[str, float | str] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        """Run one stage: yields a sink for its output lines; records its wall time."""
        self.on_start(name)
        start = time.perf_counter()
        ok = False
        try:
            yield lambda line: self.on_line(name, line)
            ok = True
        finally:
            elapsed = round(time.perf_counter() - start, 3)
            self.timings[name] = elapsed
            self.on_end(name, ok, elapsed)

    def skip(self, name: str, why: str) -> None:
        self.timings[name] = "skipped"
        self.on_skip(name, why)

    def note(self, text: str) -> None:
        """Something the user must see, e.g. that the virtual board stands in."""

    def on_start(self, name: str) -> None: ...
    def on_line(self, name: str, line: str) -> None: ...
    def on_end(self, name: str, ok: bool, seconds: float) -> None: ...
    def on_skip(self, name: str, why: str) -> None: ...


# --------------------------------------------------------------------------- the target

def choose_target(board: str | None, port: str, profile: str, fallback: bool = False) -> DeployTarget:
    """Resolve --board/--port: a named board, the one connected board, or the virtual board.

    The virtual board when asked for (`--port virtual`, or the older `--board virtual`), or
    when nothing is connected and `fallback` allows it; else no board is NoBoardFound."""
    from deploykit.firmware.boards import load_board
    from deploykit.toolchain.devices import resolve_target

    if VIRTUAL_PORT in (port, board):  # `--board virtual`: the old spelling
        profile = _virtual_profile(board, port, profile)
        load_board(profile)
        return DeployTarget(profile, None, True, f"virtual board with the {profile} profile")
    if board is not None:
        load_board(board)
        try:  # `auto`: find the board now, not after a build of several minutes
            given = port
            port, _ = resolve_target(port, board)
        except NoBoardFound as exc:
            raise NoBoardFound(f"{exc}, or --port virtual to test on the virtual board") from exc
        if given != "auto":
            check_port(port, board)  # a given port is opened once before converting and building
        return DeployTarget(board, port, False)
    if port != "auto":
        raise BadInput(f"--port {port} needs --board to say which board is on it (see `deploykit boards`)")
    try:
        port, found = resolve_target("auto")
    except NoBoardFound:
        if not fallback:
            raise NoBoardFound("no board connected, and without a terminal (or with --quiet, or CI set) "
                               "deploy does not fall back to the virtual board; plug a board in "
                               "(see `deploykit devices`) or pass --port virtual to test on the virtual "
                               "board") from None
        load_board(profile)
        return DeployTarget(profile, None, True, f"no board connected: using the virtual board with the "
                                           f"{profile} profile (pass --board ID for a real board)", fallback=True)
    except BadInput as exc:
        raise BadInput(f"{exc}, or --port virtual") from None
    assert found is not None  # `auto` goes through find_board_port, which always names the board
    return DeployTarget(found, port, False, f"found {found} on {port}")


def check_port(port: str, board_id: str) -> None:
    """Open and close a given --port now, so a missing, busy or refused port is named before
    minutes of converting and building (flash and hil run find it as early)."""
    from deploykit.firmware.boards import load_board
    from deploykit.link.ports import open_port

    if port.lower().startswith("virtual://"):
        raise BadInput(f"--port {port}: deploy runs the virtual board itself; pass --port virtual "
                       f"(with --board {board_id} for its profile)")
    open_port(port, load_board(board_id).baud, timeout=0.1).close()


def _virtual_profile(board: str | None, port: str, profile: str) -> str:
    """The board the virtual board impersonates: `--board ID --port virtual`, else --profile."""
    if port != VIRTUAL_PORT or board in (None, VIRTUAL_PORT):
        return profile
    if profile not in (DEFAULT_PROFILE, board):
        raise BadInput(f"--board {board} and --profile {profile} name two boards for the virtual board "
                       f"to impersonate; give one of them")
    return board


def check_inputs(model, data, rep_data, limit: int | None = None) -> None:
    """Refuse missing files and a bad --limit before anything is written."""
    if limit is not None and limit < 1:
        raise BadInput(f"--limit {limit} must be at least 1")
    if not Path(model).exists():
        raise BadInput(f"model {model} does not exist; give a .keras, .h5, SavedModel directory, "
                       ".tflite or an existing manifest.json")
    for flag, path in (("--data", data), ("--rep-data", rep_data)):
        if path is not None and not Path(path).is_file():
            raise BadInput(f"{flag} {path} does not exist; give an .npz, .npy or .csv file")


# --------------------------------------------------------------------------- the stages

def deploy(model, outdir, board: str | None = None, port: str = "auto", profile: str = DEFAULT_PROFILE,
           data=None, rep_data=None, name: str | None = None, quantize: str | None = None,
           label_column=None, limit: int | None = None, thresholds: dict | None = None,
           arena_size: int | None = None, arena_margin: float = 10.0, junit=None,
           stages=None, fallback: bool = False, pacing: bool = True, task: str | None = None,
           class_names: list[str] | None = None) -> DeployResult:
    """Run every stage for `model` on the chosen target; return the result (also OUT/deploy.json).

    `stages` times the stages and may show them (a StageTimer subclass); None: time only.
    `fallback`: with no board connected, use the virtual board (and say so) instead of
    raising NoBoardFound; only for a person watching (see the module docstring).
    `pacing=False` runs the virtual board without link pacing or simulated inference time
    (as `virtual-board --no-pacing`); a real board is always what it is.
    `task` and `class_names` go to convert (kept in the manifest), as convert's --task/--class-names."""
    from deploykit.atomic import lstat_or_none
    from deploykit.report import Thresholds

    stages = stages or StageTimer()
    check_inputs(model, data, rep_data, limit)
    from deploykit.model.metrics import TASK_CHOICES
    if task is not None and task not in TASK_CHOICES:  # before any stage runs
        raise BadInput(f"--task {task!r} is not one of {', '.join(TASK_CHOICES)}")
    limits = Thresholds(**(thresholds or {}))
    target = choose_target(board, port, profile, fallback)
    if not pacing and not target.virtual_board:
        raise BadInput(f"--no-pacing applies to the virtual board only, not to {target.board_id}; "
                       "drop it or pass --port virtual")
    stages.note(target.note)
    outdir = Path(outdir)
    created = lstat_or_none(outdir) is None  # a link (even dangling) is not ours to remove
    try:
        result = _run_stages(stages, model, outdir, target, port, data, rep_data, name, quantize,
                             label_column, limit, limits, arena_size, arena_margin, junit, pacing,
                             {"task": task, "class_names": class_names})
    except BadInput:  # the user's input, found wrong by a later stage: leave no half-made directory
        if created:
            shutil.rmtree(outdir, ignore_errors=True)
        raise
    from deploykit.atomic import write_json

    write_json(outdir / "deploy.json", result.to_dict())
    return result


def _run_stages(stages, model, outdir, target, port, data, rep_data, name, quantize, label_column,
                limit, limits, arena_size, arena_margin, junit, pacing: bool = True,
                task_options: dict | None = None) -> DeployResult:
    manifest_path = _convert(stages, model, outdir / "model", name, quantize, rep_data, data, label_column,
                             task_options or {})
    fit, project = _render(stages, manifest_path, target.board_id, outdir / "firmware", arena_size, arena_margin)
    result = DeployResult(outdir, target, manifest_path, project, outdir / "hil", fit, {},
                          model_name=fit.pop("model_name"))
    _build_and_flash(stages, result, port)
    result.report = _hil(stages, result, data, label_column, limit, limits, junit, pacing)
    result.timings = stages.timings
    return result


def _convert(stages, model, outdir, name, quantize, rep_data, data, label_column, task_options: dict) -> Path:
    """task_options: {"task", "class_names"} for convert (a manifest given as is keeps its own)."""
    model = Path(model)
    manifest = model / "manifest.json" if model.is_dir() and (model / "manifest.json").is_file() else model
    if manifest.name == "manifest.json":
        from deploykit.model.manifest import load

        given = [f"--{k.replace('_', '-')}" for k, v in task_options.items() if v is not None]
        if given:
            raise BadInput(f"{' and '.join(given)} apply when deploy converts a model; {manifest} is converted "
                           "already: re-convert with `deploykit convert` and these options, or drop them")
        stages.skip("convert", f"reusing {manifest}")
        return load(manifest).path
    from deploykit.model.convert import convert

    with stages.stage("convert"):
        return convert(model, outdir, name=name, quantize=quantize, rep_data=rep_data,
                       test_data=data, label_column=label_column, **task_options).path


def _render(stages, manifest_path, board_id, project_dir, arena_size, arena_margin):
    from deploykit.firmware import render

    with stages.stage("render"):
        plan = render.plan(manifest_path, board_id, arena_size, arena_margin)
        project = render.render(manifest_path, board_id, project_dir, arena_size, arena_margin)
    return projected_fit(plan), project


def projected_fit(plan) -> dict:
    """The render stage's fit figures: model + runtime estimate against flash, arena + runtime against RAM."""
    board = plan.board
    return {"model_name": str(plan.manifest["name"]), "board": board.id, "source": "projected",
            "arena": plan.arena_bytes,
            "model_bytes": len(plan.model),
            "flash_used": len(plan.model) + board.runtime_flash_bytes, "flash_total": board.flash_bytes,
            "ram_used": plan.arena_bytes + board.runtime_ram_bytes, "ram_total": board.ram_bytes}


def _build_and_flash(stages, result: DeployResult, port: str) -> None:
    if result.target.virtual_board:
        stages.skip("build", "the virtual board needs no firmware")
        stages.skip("flash", "the virtual board needs no firmware")
        return
    from deploykit.toolchain import flash, pio

    with stages.stage("build") as on_line:
        built = pio.build_project(result.project_dir, result.target.board_id, on_line=on_line)
    result.build = built.to_dict()
    if built.sizes is not None:
        result.fit = {**result.fit, **built.sizes.to_dict(), "source": "PlatformIO build"}
    with stages.stage("flash") as on_line:
        flashed = flash.flash(result.project_dir, result.target.port or port, result.target.board_id,
                              result.manifest_path, on_line=on_line)
    result.flash = flashed.to_dict()
    result.target.port = flashed.port


def _hil(stages, result: DeployResult, data, label_column, limit, thresholds, junit, pacing: bool = True) -> dict:
    from deploykit.harness.run import run_hil

    board = result.target.board_id  # sets the baud; the device's HELLO must name this board
    options = dict(board=board, data=data, label_column=label_column, limit=limit, outdir=result.report_dir,
                   junit=junit,
                   thresholds=thresholds, resume=False,
                   note=FALLBACK_NOTE if result.target.fallback else None,
                   build_json=_built_sizes(result))
    # deploy measures afresh (resume=False, under the folder's lock): the firmware may have been
    # rebuilt and reflashed (`hil run` resumes)
    with stages.stage("hil"):
        if not result.target.virtual_board:
            assert result.target.port is not None  # a real board's DeployTarget always carries its port
            return run_hil(result.manifest_path, result.target.port, **options)
        from deploykit.virtual_board import VirtualBoard

        # it stands in for the rendered firmware, so it has that firmware's arena
        with VirtualBoard(result.manifest_path, board=board, arena_configured=result.fit["arena"],
                          pacing=pacing) as port:
            result.target.port = port
            return run_hil(result.manifest_path, port, **options)


def _built_sizes(result: DeployResult):
    """The build.json of the firmware this run flashed, for the report's fit section; None when
    the firmware was not built in this run (the report then estimates flash and RAM)."""
    if not result.build or result.project_dir is None:
        return None
    path = result.project_dir / "build.json"
    return path if path.is_file() else None


# --------------------------------------------------------------------------- the summary

def summary(result: DeployResult) -> dict:
    """The figures the summary shows (deploy.json's "summary"; the CLI's table formats them
    with the target and fit): agreement, latency, arena, link; None where the report has none."""
    report = result.report
    agreement = _get(report, "agreement.tflm_host")
    us = _get(report, "latency.us")
    arena = report.get("arena") or {}
    throughput = report.get("throughput") or {}
    return {"exact_fraction": agreement.get("exact_fraction"), "max_abs_steps": agreement.get("max_abs_steps"),
            "latency_us_mean": us.get("mean"), "latency_us_p99": us.get("p99"),
            "latency_simulated": bool(report.get("simulated")),
            "arena_used": arena.get("used"), "arena_configured": arena.get("configured"),
            "arena_recommended": arena.get("recommended"),
            "link_efficiency": throughput.get("link_efficiency"), "samples_per_s": throughput.get("samples_per_s"),
            "passed": result.passed}


def _get(report: dict, dotted: str) -> dict:
    value: Any = report
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- the demo

DEMO_EXAMPLE = "sine"
DEMO_PROFILE = "nano33ble_sense"   # the virtual board impersonates an Arduino Nano 33 BLE Sense


def demo(outdir="deploykit-demo", stages=None, retrain: bool = False, limit: int | None = None) -> DeployResult:
    """Train the sine example (or reuse OUT/example/), then deploy it to the virtual board."""
    from deploykit.atomic import lstat_or_none

    stages = stages or StageTimer()
    outdir = Path(outdir)
    if lstat_or_none(outdir) is not None and not outdir.is_dir():
        raise BadInput(f"{outdir} exists and is not a directory; choose another with -o")
    files = None if retrain else cached_example(outdir / "example")
    if files is None:
        with stages.stage("train"):
            files = train_cached(outdir / "example")
    else:
        stages.skip("train", f"reusing {files['model']}")
    return deploy(files["model"], outdir, port=VIRTUAL_PORT, profile=DEMO_PROFILE, data=files["test_data"],
                  rep_data=files["rep_data"], name=DEMO_EXAMPLE, limit=limit, stages=stages)


def cached_example(directory: Path) -> dict | None:
    """The files of an earlier demo training, if all of them are still there."""
    import json

    index = Path(directory) / "example.json"
    try:
        files = {k: Path(v) for k, v in json.loads(index.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return None
    wanted = ("model", "rep_data", "test_data")
    return files if all(k in files and files[k].exists() for k in wanted) else None


def train_cached(directory: Path) -> dict:
    """Train the demo example into `directory` and index its files for the next run."""
    from deploykit.atomic import write_json
    from deploykit.examples import train_example

    files = train_example(DEMO_EXAMPLE, directory, seed=0)
    write_json(Path(directory) / "example.json", {k: str(Path(v).resolve()) for k, v in files.items()})
    return {k: Path(v) for k, v in files.items()}
