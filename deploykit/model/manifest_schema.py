"""The one validator of manifest.json: the types and ranges every later stage relies on.

`manifest.load()` runs it once, so render, the harness, the virtual board, flash and the
pytest plugin all see the same verdict: a hand-edited or damaged manifest is one line of
bad input, never a struct.error or KeyError deep inside a stage. The ranges are the wire
formats' (docs/protocol.md): tensor dtypes are the protocol's DType table, dims are u16
(at most 6 of them, as the firmware stores them), zero points i32, scales float32,
arena figures u32 with room for the renderer's margin. `model_file` must name a file
inside the manifest's folder: no `..`, no absolute path, no symlink leading out.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from deploykit.errors import BadInput
from deploykit.protocol import DType

QUANTIZATIONS = ("int8", "int8-float-io", "float32", "uint8", "int16x8")
TASKS = (None, "regression", "classification", "anomaly", "none")
MODEL_FORMATS = (None, "keras", "h5", "saved_model", "tflite")
MAX_TENSORS = 255          # a u8 count per direction in HELLO
MAX_DIMS = 6               # the firmware's dims6 table; HELLO carries a u8
MAX_DIM = 0xFFFF           # u16 per dim in HELLO
I32 = (-2 ** 31, 2 ** 31 - 1)
U32_MAX = 2 ** 32 - 1
MAX_ARENA = 2 ** 31        # HELLO's arena_configured (u32) must hold it plus the margin
MAX_RECORD_BYTES = 2 ** 24  # far above any microcontroller's RAM; keeps u32 stream offsets sane
MAX_OPS_COUNT = 0xFFFF
F32_MAX = float(np.finfo(np.float32).max)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Invalid(BadInput):
    """One thing wrong with a manifest, phrased as `where: what`."""


def problem(data: dict, directory: Path) -> str | None:
    """What is wrong with `data` (a manifest read from `directory`), or None."""
    try:
        check(data, directory)
    except Invalid as exc:
        return str(exc)
    return None


def _class_names(names) -> None:
    """class_names: null or a list of non-empty strings, one per class (the report's
    per-class table reads them by index)."""
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise Invalid("class_names must be null or a list of non-empty strings")


def check(data: dict, directory: Path) -> None:
    """Raise Invalid naming the first field whose type or range a later stage cannot use."""
    for key in ("name", "model_sha256"):
        _str(data[key], key)
    if not _SHA256.fullmatch(data["model_sha256"]):
        raise Invalid("model_sha256 must be 64 lowercase hex digits")
    _choice(data["quantization"], QUANTIZATIONS, "quantization")
    _choice(data.get("task"), TASKS, "task")
    _class_names(data.get("class_names"))
    _int(data["model_bytes"], "model_bytes", 0, U32_MAX)
    _int(data["macs_total"], "macs_total", 0, U32_MAX)
    check_model_file(data["model_file"], directory)
    _tflm_reference(data.get("tflm_reference"), directory)
    for key in ("inputs", "outputs"):
        check_tensors(data[key], key)
    _ops(data["ops"])
    _arena(data["arena"])
    _source(data.get("source"))
    if data.get("report") is not None and not isinstance(data["report"], dict):
        raise Invalid("report must be an object or null")
    if data.get("created_by") is not None:
        _str(data["created_by"], "created_by")
    names = data.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise Invalid("class_names must be a list of strings (one per class) or absent")


def check_model_file(value, directory: Path, key: str = "model_file") -> None:
    """A plain relative path that stays inside the manifest's folder once links resolve."""
    _str(value, key)
    shown = _show(value)
    if not value or PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
        raise Invalid(f"{key} {shown} must be a file name relative to the manifest's folder")
    if ".." in re.split(r"[\\/]", value):
        raise Invalid(f"{key} {shown} leads out of the manifest's folder ('..')")
    root = Path(directory).resolve()
    target = (root / value).resolve()
    if target == root or root not in target.parents:
        raise Invalid(f"{key} {shown} resolves to {target}, outside the manifest's folder "
                      f"(a symlink?); keep the files `deploykit convert` wrote beside manifest.json")


def _tflm_reference(entry, directory: Path) -> None:
    """The TFLM-host outputs convert stored for hosts without tflite-micro, or null."""
    if entry is None:
        return
    if not isinstance(entry, dict):
        raise Invalid("tflm_reference must be an object {file, samples, sha256, tflm_version} or null")
    check_model_file(entry.get("file"), directory, "tflm_reference.file")
    _int(entry.get("samples"), "tflm_reference.samples", 0, U32_MAX)
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        raise Invalid("tflm_reference.sha256 must be 64 lowercase hex digits")
    _str(entry.get("tflm_version"), "tflm_reference.tflm_version")


def check_tensors(specs, key: str) -> None:
    """1..255 tensor specs whose every field fits HELLO's encoding; records of sane size."""
    if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_TENSORS:
        raise Invalid(f"{key} must be a list of 1..{MAX_TENSORS} tensor specs")
    record = sum(check_tensor(spec, f"{key}[{i}]") for i, spec in enumerate(specs))
    if record > MAX_RECORD_BYTES:
        raise Invalid(f"{key} take {record:,} bytes per sample, more than {MAX_RECORD_BYTES:,}; "
                      "no microcontroller holds such tensors")


def check_tensor(spec, where: str) -> int:
    """Check one {name, dtype, shape, scale, zero_point}; return its size in bytes."""
    if not isinstance(spec, dict):
        raise Invalid(f"{where} must be a tensor spec object (dtype, shape, scale, zero_point)")
    if spec.get("name") is not None:
        _str(spec["name"], f"{where}.name")
    dtype = spec.get("dtype")
    if not isinstance(dtype, str) or dtype not in DType.__members__:
        raise Invalid(f"{where}.dtype is {_show(dtype)}, which the wire protocol cannot carry; "
                      f"supported: {', '.join(DType.__members__)}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise Invalid(f"{where}.shape must be a list of at most {MAX_DIMS} dims")
    for i, d in enumerate(shape):
        _int(d, f"{where}.shape[{i}]", 1, MAX_DIM)
    missing = [key for key in ("scale", "zero_point") if key not in spec]
    if missing:
        raise Invalid(f"{where} lacks {' and '.join(missing)} (0 when not quantized)")
    _scale(spec["scale"], f"{where}.scale")
    _int(spec["zero_point"], f"{where}.zero_point", *I32)
    return math.prod(shape) * DType[dtype].itemsize


def _scale(value, where: str) -> None:
    """0 (not quantized) or a finite positive number that survives float32 (HELLO's f32)."""
    if not _is_number(value) or not 0 <= value <= F32_MAX or (value and not np.float32(value) > 0):
        raise Invalid(f"{where} is {_show(value)}; it must be 0 (not quantized) or a finite positive "
                      f"number a float32 holds (the wire's scale)")


def _ops(ops) -> None:
    if not isinstance(ops, list):
        raise Invalid("ops must be a list of {op, count, macs}")
    macs = 0
    for i, entry in enumerate(ops):
        if not isinstance(entry, dict) or not isinstance(entry.get("op"), str):
            raise Invalid(f"ops[{i}] must be an object {{op, count, macs}} with an op name")
        _int(entry.get("count", 1), f"ops[{i}].count", 0, MAX_OPS_COUNT)
        macs += _int(entry.get("macs", 0), f"ops[{i}].macs", 0, U32_MAX)
    if macs > U32_MAX:
        raise Invalid(f"ops add up to {macs:,} MACs, more than {U32_MAX:,}; not a microcontroller model")


def _arena(arena) -> None:
    if not isinstance(arena, dict) or not isinstance(arena.get("projections", {}), dict):
        raise Invalid("arena must be an object with a projections object")
    for key in ("host_recorded", "host_min", "head", "tail"):
        if key in arena:
            _int(arena[key], f"arena.{key}", 0, MAX_ARENA)
    for name, value in arena.get("projections", {}).items():
        _int(value, f"arena.projections[{name!r}]", 1, MAX_ARENA)
    if arena.get("categories") is not None and not isinstance(arena["categories"], dict):
        raise Invalid("arena.categories must be an object")


def _source(source) -> None:
    """Where the model and data came from: paths (strings) or null, a CSV label column."""
    if source is None:
        return
    if not isinstance(source, dict):
        raise Invalid(f"source must be an object {{model, model_format, rep_data, test_data, "
                      f"label_column}} or null, not {type(source).__name__}")
    for key in ("model", "rep_data", "test_data"):
        value = source.get(key)
        if value is not None:
            _str(value, f"source.{key}")
    _choice(source.get("model_format"), MODEL_FORMATS, "source.model_format")
    column = source.get("label_column")
    if isinstance(column, str):  # a CSV header name
        _str(column, "source.label_column")
    elif column is not None:
        _int(column, "source.label_column", -U32_MAX, U32_MAX)


def _str(value, where: str) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise Invalid(f"{where} must be a string (without NUL), not {type(value).__name__}")
    return value


def _choice(value, choices, where: str) -> None:
    if not (value is None or isinstance(value, str)) or value not in choices:
        names = ", ".join("null" if c is None else repr(c) for c in choices)
        raise Invalid(f"{where} is {_show(value)}; expected one of {names}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"{where} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise Invalid(f"{where} is {_show(value)}, outside {low:,}..{high:,} (what the wire format "
                      f"and the firmware can hold)")
    return value


def _show(value) -> str:
    """A value for a one-line message: short, whatever its size."""
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"
