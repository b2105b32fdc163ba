"""manifest.json: the contract between the converter and every later stage.

Written by `deploykit convert` beside model.tflite. Later stages call `load()`, which
refuses a manifest whose sha256 does not match the .tflite beside it.

Schema "deploykit.manifest/1" (keys; all sizes in bytes):
  schema          "deploykit.manifest/1"
  name            model name (free text; filtered before it reaches C/C++)
  model_file      file name of the .tflite, relative to the manifest's directory
  model_sha256    hex sha256 of that file
  model_bytes     its size
  quantization    "int8" | "int8-float-io" | "float32"
  task            "regression" | "classification" | null (unknown)
  inputs, outputs list of tensor specs: {name, dtype ("int8", "float32", ...),
                  shape [ints], scale (float, 0.0 when not quantized), zero_point (int)}
  ops             list of {op: "FULLY_CONNECTED", count, macs} in first-use order
  macs_total      sum of ops[].macs
  arena           {host_recorded: bytes TFLM's RecordingMicroAllocator reported on this
                  host (measured), host_min: smallest arena AllocateTensors accepted on
                  this host (measured), head, tail, categories: the recording allocator's
                  per-category figures, projections: {target class: bytes}, e.g.
                  "cortex-m-reference", "cortex-m-cmsis-nn", "esp32-esp-nn"; each the
                  arena a 32-bit build needs to allocate (projected, never below the real
                  figure), projection_basis: how the projection was made}
  source          {model, model_format, rep_data, test_data, label_column}: paths
                  relative to the manifest's directory where possible, else absolute
  report          float-versus-quantized report on the test data, or null: task, samples,
                  size {source_bytes, tflite_bytes, float_weight_bytes}; regression:
                  float_vs_target, quantized_vs_target, quantized_vs_float {mae, rmse,
                  max_error}; classification: classes, float_accuracy, quantized_accuracy,
                  top1_agreement, confusion_float, confusion_quantized; and
                  tflm_host_vs_litert (agreement of the two desktop runtimes)
  created_by      "deploykit X.Y.Z"
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import BadInput

SCHEMA = "deploykit.manifest/1"
REQUIRED = ("schema", "name", "model_file", "model_sha256", "model_bytes", "quantization",
            "inputs", "outputs", "ops", "macs_total", "arena")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A loaded, verified manifest and where it lives."""

    path: Path
    data: dict

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def model_path(self) -> Path:
        return self.directory / self.data["model_file"]

    @property
    def sha256(self) -> str:
        return self.data["model_sha256"]

    def model_bytes(self) -> bytes:
        return self.model_path.read_bytes()

    def source_path(self, key: str) -> Path | None:
        """Resolve a path recorded under `source` (model, rep_data, test_data)."""
        value = (self.data.get("source") or {}).get(key)
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else (self.directory / p).resolve()

    def arena_projection(self, arena_class: str, board_id: str, fix: str = "re-run `deploykit convert`") -> int:
        """The 32-bit arena projection for a board's arena class, or BadInput naming the fix."""
        projections = self.data["arena"].get("projections") or {}
        if arena_class not in projections:
            raise BadInput(f"manifest {self.path} has no arena projection for {arena_class!r} "
                           f"(board {board_id}); {fix}")
        return int(projections[arena_class])

    def __getitem__(self, key):
        return self.data[key]


def load(path: Path | str, verify: bool = True) -> Manifest:
    """Read and check a manifest; raise BadInput naming the problem and the fix."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise BadInput(f"manifest {path} does not exist; run `deploykit convert MODEL -o DIR` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"manifest {path} is not valid JSON ({exc}); re-run `deploykit convert`") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BadInput(f"manifest {path} has schema {found!r}, expected {SCHEMA!r}; re-run `deploykit convert`")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise BadInput(f"manifest {path} lacks {', '.join(missing)}; re-run `deploykit convert`")
    problem = _shape_problem(data)
    if problem:
        raise BadInput(f"manifest {path}: {problem}; re-run `deploykit convert`")
    manifest = Manifest(path.resolve(), data)
    if verify:
        model = manifest.model_path
        if not model.is_file():
            raise BadInput(f"model {model} named by manifest {path} is missing; re-run `deploykit convert`")
        actual = sha256_file(model)
        if actual != manifest.sha256:
            raise BadInput(
                f"model {model} has sha256 {actual[:16]}… but manifest {path} says "
                f"{manifest.sha256[:16]}…; the files are out of step, re-run `deploykit convert`")
    return manifest


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor_problem(key: str, specs) -> str | None:
    if not isinstance(specs, list) or not specs:
        return f"{key} must be a non-empty list of tensor specs"
    for i, t in enumerate(specs):
        if not isinstance(t, dict) or not isinstance(t.get("dtype"), str) \
                or not isinstance(t.get("shape"), list) or not all(_is_int(d) for d in t["shape"]):
            return f"{key}[{i}] must be a tensor spec with a dtype string and a shape of integers"
        if not isinstance(t.get("scale", 0.0), (int, float)) or not _is_int(t.get("zero_point", 0)):
            return f"{key}[{i}] must have a numeric scale and an integer zero_point"
    return None


def _shape_problem(data: dict) -> str | None:
    """What is wrong with the types of the keys later stages read (a hand-edited or
    damaged manifest), or None: caught here, it never surfaces as a traceback."""
    for key in ("name", "model_file", "model_sha256", "quantization"):
        if not isinstance(data[key], str):
            return f"{key} must be a string"
    for key in ("model_bytes", "macs_total"):
        if not _is_int(data[key]):
            return f"{key} must be an integer"
    for key in ("inputs", "outputs"):
        problem = _tensor_problem(key, data[key])
        if problem:
            return problem
    ops = data["ops"]
    if not isinstance(ops, list) or not all(isinstance(o, dict) and isinstance(o.get("op"), str) for o in ops):
        return "ops must be a list of {op, count, macs}"
    arena = data["arena"]
    if not isinstance(arena, dict) or not isinstance(arena.get("projections", {}), dict):
        return "arena must be an object with a projections object"
    if not all(_is_int(v) and v > 0 for v in arena.get("projections", {}).values()):
        return "arena projections must be positive integers (bytes)"
    if not all(_is_int(arena.get(k, 0)) for k in ("host_recorded", "host_min")):
        return "arena host_recorded and host_min must be integers (bytes)"
    return None
