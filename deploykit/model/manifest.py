"""manifest.json: the contract between the converter and every later stage.

Written by `deploykit convert` beside model.tflite. Later stages call `load()`, which
validates every field once (deploykit.model.manifest_schema: types, and ranges that fit
the wire formats) and refuses a manifest whose sha256 does not match the .tflite beside it.
No stage re-validates a loaded manifest its own way.

Schema "deploykit.manifest/1" (keys; all sizes in bytes):
  schema          "deploykit.manifest/1"
  name            model name (free text; filtered before it reaches C/C++)
  model_file      file name of the .tflite, relative to the manifest's directory
  model_sha256    hex sha256 of that file
  model_bytes     its size
  quantization    "int8" | "int8-float-io" | "float32" | "uint8" (uint8 I/O around int8, a
                  .tflite taken as is) | "int16x8" (16-bit activations, 8-bit weights)
  task            "regression" | "classification" | "anomaly" | "none" | null (unknown)
  inputs, outputs 1..255 tensor specs: {name, dtype (a name in the protocol's DType
                  table: "int8", "float32", ...), shape (<= 6 dims of 1..65535), scale
                  (0.0 when not quantized, else a positive float32), zero_point (int32)}
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
  tflm_reference  {file: "tflm_reference.npz" (inputs and TFLM-host outputs of the test
                  data), samples, sha256, tflm_version} or absent: what `hil run` compares
                  against on a host without tflite-micro
  created_by      "deploykit X.Y.Z"
  tools           {deploykit, tensorflow, tflite_micro, ai_edge_litert}: versions installed
                  at convert time (null where absent), or absent in older manifests
  class_names     optional list of one name per class (a classifier's output order); the
                  report's per-class table and confusion matrix use them, else indices
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import BadInput
from deploykit.model import manifest_schema

SCHEMA = "deploykit.manifest/1"
REQUIRED = ("schema", "name", "model_file", "model_sha256", "model_bytes", "quantization",
            "inputs", "outputs", "ops", "macs_total", "arena")
MAX_MANIFEST_BYTES = 16 * 2 ** 20   # a manifest is a few KB; refuse to parse a huge file


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (a large file costs no memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    """Read and check a manifest; raise BadInput naming the problem and the fix.

    The one place a manifest is validated (deploykit.model.manifest_schema): every
    command gets a manifest whose fields have the types and ranges the wire formats,
    the firmware and the virtual board take.
    """
    path = Path(path)
    if _exists(path, "manifest", Path.is_dir):
        path = path / "manifest.json"
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BadInput(f"manifest {path} has schema {_short(found)}, expected {SCHEMA!r}; re-run `deploykit convert`")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise BadInput(f"manifest {path} lacks {', '.join(missing)}; re-run `deploykit convert`")
    manifest = Manifest(path.resolve(), data)
    problem = manifest_schema.problem(data, manifest.directory)
    if problem:
        raise BadInput(f"manifest {path}: {problem}; re-run `deploykit convert`")
    if verify:
        _verify_model(manifest, path)
    return manifest


def _exists(path: Path, what: str, test=Path.is_file) -> bool:
    """`test(path)`, with a name the file system refuses (too long, ...) as bad input."""
    try:
        return test(path)
    except OSError as exc:
        raise BadInput(f"{what} {_short(str(path))} cannot be looked up ({exc.strerror or exc}); "
                       "give a shorter, valid path") from exc


def _read_json(path: Path):
    if not _exists(path, "manifest"):
        raise BadInput(f"manifest {path} does not exist; run `deploykit convert MODEL -o DIR` first")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BadInput(f"manifest {path} is {path.stat().st_size:,} bytes, not a manifest "
                       f"(they take a few KB); give the manifest.json `deploykit convert` wrote")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON, huge ints
        raise BadInput(f"manifest {path} is not valid JSON ({_short(exc)}); re-run `deploykit convert`") from exc
    except OSError as exc:
        raise BadInput(f"manifest {path} cannot be read ({exc.strerror or exc}); check its permissions") from exc


def _verify_model(manifest: Manifest, path: Path) -> None:
    """The .tflite beside the manifest is the one it describes (sha256)."""
    model = manifest.model_path
    if not _exists(model, "model"):
        raise BadInput(f"model {model} named by manifest {path} is missing; re-run `deploykit convert`")
    try:
        actual = sha256_file(model)
    except OSError as exc:
        raise BadInput(f"model {model} cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if actual != manifest.sha256:
        raise BadInput(
            f"model {model} has sha256 {actual[:16]}… but manifest {path} says "
            f"{manifest.sha256[:16]}…; the files are out of step, re-run `deploykit convert`")


def _short(value) -> str:
    text = repr(value) if not isinstance(value, Exception) else (str(value).splitlines() or [""])[0]
    return text if len(text) <= 80 else text[:80] + "…"
