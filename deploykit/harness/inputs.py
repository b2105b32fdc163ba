"""The test data of a run: loaded, checked against the model input, quantized, hashed.

Float data is quantized with the input tensor's scale and zero point exactly as TFLite
does (deploykit.model.quantization: round half away from zero, clamp); data already in the
input dtype passes as is. The hash names the data in results.jsonl so a resumed run
only continues a file written for the same model and the same data. A model with several
inputs takes one array per input (datafiles.input_arrays); a sample's wire record is its
input tensors back to back, in input order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.errors import BadInput
from deploykit.model.datafiles import input_arrays, load_data
from deploykit.model.reference import model_inputs


@dataclass
class RunInputs:
    """Samples as the model takes them (x_model), as given (x), labels, provenance.

    x and x_model are the first input's; xs and xs_model hold every input's (in order)."""

    x: np.ndarray
    x_model: np.ndarray
    y: np.ndarray | None
    path: Path
    sha256: str
    xs: list[np.ndarray] = field(default_factory=list)
    xs_model: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self):
        self.xs = self.xs or [self.x]
        self.xs_model = self.xs_model or [self.x_model]

    def __len__(self) -> int:
        return len(self.x_model)

    def records(self, indices) -> np.ndarray:
        """The wire records of `indices`: (k, in_record) bytes as uint8, every input's
        tensor bytes back to back."""
        idx = np.asarray(indices, dtype=np.int64)
        parts = [np.ascontiguousarray(a[idx]).reshape(len(idx), -1).view(np.uint8) for a in self.xs_model]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def reference_inputs(self) -> list[np.ndarray]:
        """Each input as the references take it: as given when that is float, else in the
        model's dtype (so the float model gets the dequantized values)."""
        return [x if x.dtype != xm.dtype else xm for x, xm in zip(self.xs, self.xs_model, strict=True)]


def load_inputs(manifest, data=None, limit: int | None = None, label_column=None) -> RunInputs:
    """Load `data` (default: the test split the converter recorded) for `manifest`'s input.

    `label_column` (a CSV's label column, index or header name) applies to `data`; the
    recorded test split uses the column the converter recorded with it."""
    if limit is not None and limit < 1:
        raise BadInput(f"--limit {limit} must be at least 1")
    path = Path(data) if data else manifest.source_path("test_data")
    if path is None:
        raise BadInput(f"manifest {manifest.path} records no test data; pass --data FILE (.npz, .npy, .csv)")
    if not data:
        label_column = (manifest.data.get("source") or {}).get("label_column")
    dataset = load_data(path, label_column=label_column)
    specs = manifest["inputs"]
    xs = input_arrays(dataset, specs, input_aliases(manifest))
    y = dataset.y
    xs_model = [_to_model_dtype(x, spec, path) for x, spec in zip(xs, specs, strict=True)]
    digest = _digest(xs_model)      # of all samples, so a run with a larger --limit resumes
    if limit is not None:
        xs, xs_model, y = [x[:limit] for x in xs], [x[:limit] for x in xs_model], (y[:limit] if y is not None else None)
    return RunInputs(xs[0], xs_model[0], y, path, digest, xs, xs_model)


def _digest(xs_model: list[np.ndarray]) -> str:
    """The data's hash: the input's bytes (a single-input model's as before), else each input's in order."""
    h = hashlib.sha256(np.ascontiguousarray(xs_model[0]).tobytes())
    for x in xs_model[1:]:
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def input_aliases(manifest) -> list[str | None]:
    """Each input's signature name (data arrays may be named by it), from the model file;
    not looked up for a single input (x, x0 and its tensor name do)."""
    if len(manifest["inputs"]) == 1:
        return [None]
    from deploykit.model.io_order import signature_names
    from deploykit.model.tflite_model import parse
    model = manifest.model_bytes()
    names = signature_names(model)
    return [names.get(i) for i in parse(model).input_indices]


def _to_model_dtype(x: np.ndarray, spec: dict, path: Path) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if x.dtype != dtype and np.issubdtype(dtype, np.integer) and not spec.get("scale"):
        raise BadInput(f"model input is {dtype} without a scale; give data in {dtype} ({path} has {x.dtype})")
    return model_inputs(x, spec)
