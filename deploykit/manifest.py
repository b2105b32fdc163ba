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
