"""The test data of a run: loaded, checked against the model input, quantized, hashed.

Float data is quantized with the input tensor's scale and zero point exactly as TFLite
does (deploykit.model.quantization: round half away from zero, clamp); data already in the
input dtype passes as is. The hash names the data in results.jsonl so a resumed run
only continues a file written for the same model and the same data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.errors import BadInput
from deploykit.model.datafiles import check_fits, load_data
from deploykit.model.reference import model_inputs


@dataclass
class RunInputs:
    """Samples as the model takes them (x_model), as given (x), labels, provenance."""

    x: np.ndarray
    x_model: np.ndarray
    y: np.ndarray | None
    path: Path
    sha256: str

    def __len__(self) -> int:
        return len(self.x_model)

    def records(self, indices) -> np.ndarray:
        """The wire records of `indices`: (k, in_record) bytes as uint8."""
        rows = self.x_model[np.asarray(indices, dtype=np.int64)]
        return np.ascontiguousarray(rows).reshape(len(rows), -1).view(np.uint8)


def load_inputs(manifest, data=None, limit: int | None = None, label_column=None) -> RunInputs:
    """Load `data` (default: the test split the converter recorded) for `manifest`'s input.

    `label_column` (a CSV's label column, index or header name) applies to `data`; the
    recorded test split uses the column the converter recorded with it."""
    if limit is not None and limit < 1:
        raise BadInput(f"--limit {limit} must be at least 1")
    if len(manifest["inputs"]) != 1:
        raise BadInput(f"manifest {manifest.path} has {len(manifest['inputs'])} input tensors; "
                       "the harness streams single-input models only")
    path = Path(data) if data else manifest.source_path("test_data")
    if path is None:
        raise BadInput(f"manifest {manifest.path} records no test data; pass --data FILE (.npz, .npy, .csv)")
    if not data:
        label_column = (manifest.data.get("source") or {}).get("label_column")
    dataset = load_data(path, label_column=label_column)
    spec = manifest["inputs"][0]
    x = check_fits(dataset, spec)
    y = dataset.y
    x_model = _to_model_dtype(x, spec, path)
    digest = hashlib.sha256(np.ascontiguousarray(x_model).tobytes()).hexdigest()  # of all samples,
    if limit is not None:                               # so a run with a larger --limit resumes
        x, x_model, y = x[:limit], x_model[:limit], (y[:limit] if y is not None else None)
    return RunInputs(x, x_model, y, path, digest)


def _to_model_dtype(x: np.ndarray, spec: dict, path: Path) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if x.dtype != dtype and np.issubdtype(dtype, np.integer) and not spec.get("scale"):
        raise BadInput(f"model input is {dtype} without a scale; give data in {dtype} ({path} has {x.dtype})")
    return model_inputs(x, spec)
