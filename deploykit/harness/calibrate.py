"""`deploykit calibrate`: measure a board's operator costs and write its ID.cost.toml.

For each micro-model (harness/calibrate_models.py: convolutions, depthwise convolutions,
dense layers and every element-wise group, int8 and float32, at several shapes) it makes a
manifest, gets the model onto the device (a real board: render with --diagnostics, build,
flash; the virtual board: serve it), runs one record and asks for its per-operator ticks
`runs` times (OP_TIMING_REQ), and keeps each operator's median cycles. Then it fits the
cost model's coefficients to every operator at once by least squares:

    cycles(op) = overhead + MACs × cycles_per_mac[dtype][shape] + outputs × per_output[kind]
    cycles(op) = overhead + elements × per_element[kind][group]        (element-wise ops)

(shape, group and element counts as virtual_board/cost.py defines them), weighting each
operator by 1/cycles so that small operators count as much as large ones, and writes the
figures to ID.cost.toml in the boards folder asked for, atomically. The boards loader
attaches it to board ID; the virtual board then prices that board's operators with it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.errors import BadInput, DeviceError
from deploykit.firmware.boards import COST_SUFFIX
from deploykit.virtual_board import cost, cost_table

DEFAULT_RUNS = 5
OVERHEAD = "op_overhead_cycles"


@dataclass
class Calibration:
    """What a calibration measured and fitted."""

    board: str
    coefficients: dict[str, float]                 # "section.kind.name" -> cycles (OVERHEAD alone)
    observations: int
    residual: float                                # largest relative misfit of an operator
    path: Path | None = None
    models: list[str] = field(default_factory=list)
    simulated: bool = False

    def nested(self) -> dict:
        """The coefficients as the cost file nests them."""
        out: dict = {}
        for name, value in self.coefficients.items():
            if name == OVERHEAD:
                out[OVERHEAD] = value
                continue
            node = out
            *parents, leaf = name.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out


# ----------------------------------------------------------------------------- the fit

def features(op) -> dict[str, float]:
    """The columns of one operator's row: coefficient name -> what multiplies it."""
    row = {OVERHEAD: 1.0}
    shape = cost.shape_class(op)
    if op.op in cost.MAC_SHAPES and shape and shape != "recurrent":
        row[f"cycles_per_mac.{cost.mac_dtype(op.dtype)}.{shape}"] = float(op.macs)
        row[f"per_output.{cost.element_kind(op.dtype)}"] = float(op.out_elems)
    elif op.op in cost_table.OP_GROUP:
        group = cost_table.OP_GROUP[op.op]
        row[f"per_element.{cost.element_kind(op.dtype)}.{group}"] = float(cost.element_count(op))
    else:
        return {}
    return row


def fit(rows: list[dict[str, float]], cycles: list[float]) -> tuple[dict[str, float], float]:
    """Least-squares coefficients for the rows, and the largest relative misfit."""
    names = sorted({k for r in rows for k in r}, key=lambda k: (k != OVERHEAD, k))
    a = np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=np.float64)
    y = np.asarray(cycles, dtype=np.float64)
    if not len(y) or np.any(y <= 0):
        raise DeviceError("the device reported operators of 0 ticks; its timer does not run under the profiler")
    w = 1.0 / y                                   # relative errors: every operator counts
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    design = a / scale * w[:, None]
    solution, _, rank, _ = np.linalg.lstsq(design, y * w, rcond=None)
    if rank < len(names):
        raise DeviceError(f"calibration cannot tell {len(names)} figures apart from {len(y)} operators "
                          f"(rank {rank}); the micro-models did not run completely")
    coef = solution / scale
    misfit = float(np.max(np.abs(a @ coef - y) / y))
    return {k: float(v) for k, v in zip(names, coef, strict=True)}, misfit


# ----------------------------------------------------------------------------- measuring

def calibrate(port: str, board_id: str, outdir, runs: int = DEFAULT_RUNS, work_dir=None,
              on_progress=None) -> Calibration:
    """Measure every micro-model on the board at `port` ("virtual": the virtual board as
    `board_id`), fit, and write OUTDIR/ID.cost.toml; see the module docstring."""
    from deploykit.firmware.boards import load_board
    board = load_board(board_id)     # an unknown board: BadInput, before anything runs
    if runs < 1:
        raise BadInput(f"--runs {runs}: give how many times to time each micro-model (1 or more)")
    outdir = Path(outdir)
    from deploykit.atomic import ensure_writable_dir
    ensure_writable_dir(outdir)
    if port != "virtual":   # no board found or the port will not open: exit 3, before any build
        from deploykit.toolchain.devices import resolve_target
        from deploykit.toolchain.flash import check_port
        port, _ = resolve_target(port, board_id)
        check_port(port, board.baud)
    rows: list[dict[str, float]] = []
    cycles: list[float] = []
    simulated = False
    with tempfile.TemporaryDirectory(prefix="deploykit-calibrate-", dir=work_dir) as tmp:
        from deploykit.harness.calibrate_models import micro_models
        models = micro_models()
        for name, model in models.items():
            if on_progress:
                on_progress(f"timing {name} ({runs} runs)")
            manifest = _manifest(model, Path(tmp) / name, name)
            measured, simulated = _measure(manifest, port, board, runs, Path(tmp) / name)
            for op, ticks in zip(manifest_ops(manifest), measured, strict=True):
                row = features(op)
                if row:
                    rows.append(row)
                    cycles.append(ticks)
    coefficients, misfit = fit(rows, cycles)
    result = Calibration(board.id, coefficients, len(rows), misfit, models=list(models), simulated=simulated)
    result.path = write_cost_file(outdir, board, result, port)
    return result


def manifest_ops(manifest) -> list:
    from deploykit.model import tflite_model
    return tflite_model.parse(manifest.model_bytes()).operators


def _manifest(model: bytes, directory: Path, name: str):
    """model.tflite + manifest.json for one micro-model (the .tflite path of convert: no TensorFlow)."""
    from deploykit.model.convert import convert
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{name}.tflite"
    source.write_bytes(model)
    return convert(source, directory / "model", name=name)


def _measure(manifest, port: str, board, runs: int, directory: Path) -> tuple[list[float], bool]:
    """Median cycles per operator of `runs` OP_TIMES answers, and whether they are simulated."""
    if port == "virtual":
        from deploykit.link.serial_handlers.protocol_virtual import url_for
        url = url_for(manifest.path, board.id) + "&pacing=0"
    else:
        url = _flash(manifest, port, board, directory)
    from deploykit.harness import diag_link
    from deploykit.link.session import DeviceSession
    from deploykit.protocol import TimerKind
    record = _zero_record(manifest)
    with DeviceSession(url, board.baud, expected_sha256=manifest.sha256) as session:
        from deploykit.harness.diagnostics import RENDER_OPTION
        from deploykit.link.identity import require_capability
        from deploykit.protocol import Capability
        require_capability(session.hello, Capability.OP_TIMING, RENDER_OPTION, url)
        ticks = [[t for _, _, t in diag_link.op_times(session, record)] for _ in range(runs)]
        hello = session.hello
    assert hello is not None  # the session's handshake read it
    per_tick = hello.cpu_hz / 1e6 if hello.timer == TimerKind.micros else 1.0
    return list(np.median(np.asarray(ticks, dtype=np.float64), axis=0) * per_tick), bool(hello.simulated)


def _zero_record(manifest) -> bytes:
    """One input record of zero points (inputs back to back): every micro-model runs on it."""
    out = b""
    for spec in manifest["inputs"]:
        n = int(np.prod(spec["shape"]))
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        fill = spec.get("zero_point", 0) if dtype.kind in "iu" else 0
        out += np.full(n, fill, dtype=dtype).tobytes()
    return out


def _flash(manifest, port: str, board, directory: Path) -> str:
    """Render with --diagnostics, build and flash one micro-model; the port it answers on."""
    from deploykit.firmware import render
    from deploykit.toolchain import flash, pio
    project = render.render(manifest.path, board.id, directory / "firmware", diagnostics=True)
    pio.build_project(project, board.id)
    return flash.flash(project, port, board.id, manifest.path).port


# ----------------------------------------------------------------------------- the file

def cost_file_text(board, result: Calibration, port: str) -> str:
    """ID.cost.toml: the fitted figures, with where and how they were measured."""
    lines = [f"# {board.id}: operator costs measured by `deploykit calibrate` on {port}",
             f"# ({'the virtual board: simulated' if result.simulated else 'the board'}), "
             f"{result.observations} operators of {len(result.models)} micro-models, "
             f"largest misfit {result.residual:.1%}.",
             "# Cycles on the board's clock; they replace the cost table's figures for this board",
             "# (virtual_board/cost.py). Figures not here (int16, BATCH_MATMUL, TRANSPOSE_CONV,",
             "# recurrent ops) still come from virtual_board/cost_table.py.",
             f'board = "{board.id}"',
             f'measured = "{time.strftime("%Y-%m-%dT%H:%M:%S")}"',
             f'kernels = "{cost.kernel_family(board)}"']
    nested = result.nested()
    lines.append(f"{OVERHEAD} = {nested.pop(OVERHEAD, 0.0):.6g}")
    for section in ("per_output", "cycles_per_mac", "per_element"):
        body = nested.get(section) or {}
        if section == "per_output":
            if body:
                lines += ["", "[per_output]"] + [f"{k} = {v:.6g}" for k, v in sorted(body.items())]
            continue
        for kind, table in sorted(body.items()):
            lines += ["", f"[{section}.{kind}]"] + [f"{k} = {v:.6g}" for k, v in sorted(table.items())]
    return "\n".join(lines) + "\n"


def write_cost_file(outdir: Path, board, result: Calibration, port: str) -> Path:
    """OUTDIR/ID.cost.toml, written atomically (a temp file, then renamed)."""
    from deploykit.atomic import write_text
    path = Path(outdir) / f"{board.id}{COST_SUFFIX}"
    write_text(path, cost_file_text(board, result, port))
    return path
