"""Render a PlatformIO project (and optionally an Arduino sketch) for a manifest and a board.

Inputs: a verified manifest (the .tflite's sha256 must match) and a board file. Output: a
directory that builds with plain `pio run`: platformio.ini, the protocol core copied
verbatim, model data, a TFLM runner with exactly the model's ops, and a thin main for the
board's adapter. Everything is computed and checked (ops known to TFLM, arena, fit,
frame sizes) before a byte is written; the files are then written by project_dir, which
never loses a file render did not write.
Nothing depends on time or paths, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2

from deploykit import __version__
from deploykit.errors import BadInput
from deploykit.firmware import build_id, fit
from deploykit.firmware.boards import Board, load_board
from deploykit.firmware.cfilters import FILTERS, c_ident
from deploykit.firmware.project_dir import write_project
from deploykit.firmware.resources import data_dir
from deploykit.model.arena import round16, with_margin
from deploykit.model.manifest import Manifest, load as load_manifest
from deploykit.protocol.framing import max_payload_for_window  # noqa: F401  (tests size frames by it)
from deploykit.protocol.spec import DType

# Files every project gets: output path -> template (None: copied verbatim).
COMMON_FILES = {
    "src/dk_spec.h": None,
    "src/dk_protocol.h": None,
    "src/dk_protocol.cpp": None,
    "src/dk_config.h": "src/dk_config.h.j2",
    "src/model_data.h": "src/model_data.h.j2",
    "src/model_data.cpp": "src/model_data.cpp.j2",
    "src/dk_runner.h": "src/dk_runner.h.j2",
    "src/dk_runner.cpp": "src/dk_runner.cpp.j2",
}
# The board's adapter picks its entry point (and any host stand-ins).
ADAPTER_FILES = {
    "arduino": {"src/main.cpp": "main/arduino.cpp.j2"},
    "host": {"src/main.cpp": "main/host.cpp.j2", "include/Arduino.h": "host/Arduino.h.j2"},
}
# How TFLM's DebugLog reaches our hook: wrapped at link time on Arduino (the port defines
# DebugLog itself), defined outright on the host (ARDUINO_EXCLUDE_CODE drops the port's).
ADAPTER_LOG = {
    "arduino": ("__wrap_DebugLog", ["-Wl,--wrap=DebugLog"]),
    "host": ("DebugLog", []),
}
# Directories PlatformIO gives a meaning to: the sketch folder must not take one's name.
PIO_DIRS = ("src", "include", "lib", "test", "data", "boards")


@dataclass(frozen=True)
class Plan:
    """Everything decided before writing: sizes, ops, and the template context."""

    manifest: Manifest
    board: Board
    model: bytes
    arena_bytes: int
    context: dict


def _tensor(spec: dict) -> dict:
    """Template fields of one tensor spec (manifest.load validated dtype, dims and ranges)."""
    dtype = DType[spec["dtype"]]
    shape = [int(d) for d in spec["shape"]]
    scale = float(spec.get("scale") or 0.0)
    return {"name": str(spec.get("name", "")), "dtype_code": int(dtype), "shape": shape,
            "dims6": shape + [0] * (6 - len(shape)), "bytes": math.prod(shape) * dtype.itemsize,
            "scale_literal": f"{scale!r}f", "zero_point": int(spec.get("zero_point") or 0)}


def _op_table() -> dict[str, str]:
    path = data_dir("firmware_templates") / "tflm_ops.json"
    return json.loads(path.read_text(encoding="utf-8"))["ops"]


def resolver_ops(manifest: Manifest) -> list[dict]:
    """The model's ops in first-use order, each with its MicroMutableOpResolver method."""
    table = _op_table()
    ops, seen = [], set()
    for entry in manifest["ops"]:
        name = str(entry.get("op"))
        if name in seen:
            continue
        if name not in table:
            raise BadInput(f"model op {name!r} has no MicroMutableOpResolver Add method in TFLM; "
                           f"change the model to use TFLM-supported ops (see `deploykit inspect`)")
        seen.add(name)
        ops.append({"op": name, "method": table[name]})
    if not ops:
        raise BadInput(f"manifest {manifest.path} lists no ops; re-run `deploykit convert`")
    return ops


def check_per_channel_dense(model: bytes, board: Board, name: str) -> None:
    """Refuse per-channel FULLY_CONNECTED weights on a port that applies one scale to all."""
    if board.tflm_per_channel_fc:
        return
    from deploykit.model.tflite_model import parse
    parsed = parse(model, origin=name)
    for op in parsed.operators:
        if op.op == "FULLY_CONNECTED" and len(op.inputs) > 1 and op.inputs[1] >= 0 \
                and len(parsed.tensors[op.inputs[1]].scales) > 1:
            raise BadInput(f"model {name!r} has per-channel quantized FULLY_CONNECTED weights, which the "
                           f"TFLM port of board {board.id} computes wrongly (one scale for all channels); "
                           f"re-quantize them per tensor with `deploykit convert MODEL.tflite --fc-per-tensor "
                           f"--test-data FILE` (it reports the accuracy before and after), or re-convert the "
                           f"Keras/SavedModel source with `deploykit convert` (it quantizes dense layers per tensor)")


def arena_size(manifest: Manifest, board: Board, arena_bytes: int | None,
               margin_pct: float) -> tuple[int, str]:
    """Arena bytes for this board and a note on where the figure came from."""
    if arena_bytes is not None:
        if arena_bytes <= 0:
            raise BadInput(f"--arena-size must be a positive number of bytes, not {arena_bytes}")
        size = round16(arena_bytes)
        return size, f"{size} bytes from --arena-size {arena_bytes} (rounded up to 16)"
    if margin_pct < 0 or not math.isfinite(margin_pct):
        raise BadInput(f"--arena-margin must be a percentage >= 0, not {margin_pct}")
    arena = manifest["arena"]
    base = manifest.arena_projection(board.arena_class, board.id,
                                     "re-run `deploykit convert` or pass --arena-size")
    source = f"projection {board.arena_class}"
    if board.adapter == "host":  # built for this host's pointer width: the host figures bind
        base = max(base, int(arena.get("host_recorded") or 0), int(arena.get("host_min") or 0))
        source += " or this host's measured figures, whichever is larger"
    size = with_margin(base, margin_pct)
    return size, f"{size} bytes = {base} ({source}) + {margin_pct:g}% margin, rounded up to 16"


def _protocol_macros(board: Board, in_record: int, out_record: int) -> dict[str, int | str]:
    """Buffer sizes of the protocol core; outputs larger than a RESULT go as RESULT_PARTs."""
    return {"DK_MAX_PAYLOAD": fit.max_payload(board), "DK_MAX_INPUT_BYTES": in_record,
            "DK_MAX_OUTPUT_BYTES": out_record, "DK_RX_WINDOW": board.rx_buffer_bytes}


def _tensors(manifest: Manifest) -> tuple[list[dict], list[dict]]:
    return [_tensor(t) for t in manifest["inputs"]], [_tensor(t) for t in manifest["outputs"]]


def _context(manifest: Manifest, board: Board, model: bytes, **sized) -> dict:
    """Everything the templates see; `sized` holds ops, tensors, macros and the arena."""
    log_symbol, log_flags = ADAPTER_LOG[board.adapter]
    flags = [f"-D{k}={v}" for k, v in sized["macros"].items()]
    flags += [f"-DDK_ARENA_BYTES={sized['arena_bytes']}", *log_flags, *board.build_flags]
    return {
        "version": __version__, "board": board, "model_name": str(manifest["name"]),
        "model_file": str(manifest["model_file"]), "model_bytes": model, "model_len": len(model),
        "sha256": manifest.sha256, "sha256_bytes": bytes.fromhex(manifest.sha256),
        "max_payload": sized["macros"]["DK_MAX_PAYLOAD"], "build_flags": flags,
        "debug_log_symbol": log_symbol, **sized,
    }


def plan(manifest_path, board_id: str, arena_bytes: int | None = None, arena_margin: float = 10.0,
         diagnostics: bool = False) -> Plan:
    """Load, check and size everything; raise BadInput before anything is written.

    `diagnostics`: profile every operator and keep every tensor (firmware/diagnostics.py);
    the arena grows by the measured figure, context["diagnostics"]["extra_bytes"].
    """
    board = load_board(board_id)
    manifest = load_manifest(manifest_path)
    name, model = str(manifest["name"]), manifest.model_bytes()
    ops = resolver_ops(manifest)
    inputs, outputs = _tensors(manifest)
    in_record, out_record = sum(t["bytes"] for t in inputs), sum(t["bytes"] for t in outputs)
    macros = _protocol_macros(board, in_record, out_record)
    arena, arena_note = arena_size(manifest, board, arena_bytes, arena_margin)
    diag = None
    if diagnostics:  # --diagnostics: profiler + every tensor kept (firmware/diagnostics.py)
        from deploykit.firmware.diagnostics import CAPABILITIES, diagnostics_plan
        diag = diagnostics_plan(manifest, model)
        arena, arena_note = arena + diag["extra_bytes"], f"{arena_note}; {diag['note']}"
        macros["DK_CAPABILITIES"] = f"{CAPABILITIES}u"
    fit.check(manifest, board, model, arena, name)
    context = _context(manifest, board, model, ops=ops, inputs=inputs, outputs=outputs,
                       in_record=in_record, out_record=out_record, macros=macros,
                       arena_bytes=arena, arena_note=arena_note, diagnostics=diag)
    return Plan(manifest, board, model, arena, context)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("firmware_templates"))),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(FILTERS)
    return env


def render_files(p: Plan, arduino_sketch: bool = False) -> dict[str, bytes]:
    """Relative path -> file bytes of the whole project (nothing touches the disk)."""
    env, root = _environment(), data_dir("firmware_templates")
    wanted = {**COMMON_FILES, **ADAPTER_FILES[p.board.adapter], "platformio.ini": "platformio.ini.j2",
              "README.md": "README.md.j2"}
    files = {}
    for out, template in sorted(wanted.items()):
        if template is None:
            files[out] = (root / out).read_bytes()
        else:
            files[out] = env.get_template(template).render(p.context).encode("utf-8")
    files.update(build_id.stamp(files, p.board.lib_deps))  # last: it hashes every other file
    if arduino_sketch:
        files.update(_sketch_files(p, files))
    return files


def _sketch_files(p: Plan, files: dict[str, bytes]) -> dict[str, bytes]:
    """NAME/NAME.ino plus the same sources, for the Arduino IDE or arduino-cli."""
    if p.board.adapter != "arduino":
        raise BadInput(f"board {p.board.id} is not an Arduino board; drop --arduino-sketch")
    name = c_ident(p.context["model_name"], prefix="dk")
    if name.lower() in PIO_DIRS:  # src/src.ino would be built by `pio run` beside main.cpp
        name = f"dk_{name}"
    sketch = {f"{name}/{name}.ino": files["src/main.cpp"]}
    for path, data in files.items():
        if path.startswith("src/") and path != "src/main.cpp":
            sketch[f"{name}/{path[4:]}"] = data
    return sketch


def render(manifest_path, board_id: str, outdir, arena_size: int | None = None,
           arena_margin: float = 10.0, arduino_sketch: bool = False, diagnostics: bool = False) -> Path:
    """Render the project for `manifest_path` on `board_id` into `outdir`.

    `outdir` is new, empty, or a project render wrote: only render's own unedited files in
    it are replaced (see deploykit.firmware.project_dir); anything else is refused.
    """
    p = plan(manifest_path, board_id, arena_size, arena_margin, diagnostics)
    files = render_files(p, arduino_sketch)
    return write_project(outdir, files, {"board": p.board.id, "model_sha256": p.manifest.sha256})
