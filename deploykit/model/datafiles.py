"""Read the data files `convert` and the harness take: .npz (x, optional y), .npy, .csv.

Every problem a user can fix (missing file, empty, NaN, wrong shape) is a BadInput naming
the file and what to do, so nothing downstream sees bad data.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.errors import BadInput

SUFFIXES = (".npz", ".npy", ".csv")


@dataclass
class Dataset:
    """Inputs `x` (first axis = samples), optional labels/targets `y`, and their file."""

    x: np.ndarray
    y: np.ndarray | None
    path: Path


def load_data(path, label_column: int | None = None) -> Dataset:
    """Load and validate a data file; raise BadInput on anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"data file {path} does not exist or is not a file; give an .npz, .npy or .csv file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"data file {path} has suffix {suffix!r}; use .npz (x, optional y), .npy or .csv")
    try:
        x, y = _READERS[suffix](path, label_column)
    except BadInput:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"data file {path} cannot be read ({_short(exc)}); re-save it as .npz with array x") from exc
    _check_values(path, "x", x)
    if y is not None:
        _check_values(path, "y", y)
        if len(y) != len(x):
            raise BadInput(f"data file {path} has {len(x)} inputs but {len(y)} labels; they must match")
    return Dataset(x=x, y=y, path=path)


def check_fits(dataset: Dataset, input_spec: dict) -> np.ndarray:
    """Return x reshaped to (n, *input_shape[1:]) or raise BadInput naming both shapes."""
    want = tuple(int(d) for d in input_spec["shape"][1:])
    x = dataset.x
    per_sample = int(np.prod(want)) if want else 1
    have = x.shape[1:]
    if tuple(have) == want:
        return x
    if int(np.prod(have)) == per_sample:
        return x.reshape((x.shape[0],) + want)
    raise BadInput(
        f"data in {dataset.path} has samples of shape {list(have)} but the model input "
        f"{input_spec.get('name', '')!s} wants {list(want)} (tensor shape {list(input_spec['shape'])}); "
        "give data matching the model")


def _read_npz(path: Path, label_column):
    with np.load(path, allow_pickle=False) as npz:
        if "x" not in npz.files:
            raise BadInput(f"data file {path} has arrays {npz.files} but no 'x'; save inputs as x (and labels as y)")
        x = npz["x"]
        y = npz["y"] if "y" in npz.files else None
    return _as_samples(path, x), y


def _read_npy(path: Path, label_column):
    return _as_samples(path, np.load(path, allow_pickle=False)), None


def _read_csv(path: Path, label_column):
    text = path.read_text(encoding="utf-8", errors="strict")
    rows = [line for line in text.splitlines() if line.strip()]
    if rows and not _is_numeric_row(rows[0]):
        rows = rows[1:]  # a header line
    if not rows:
        raise BadInput(f"data file {path} is empty; it needs one sample per row")
    table = np.array([[float(v) for v in row.split(",")] for row in rows], dtype=np.float32)
    if label_column is None:
        return table, None
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise BadInput(f"--label-column {label_column} is outside the {table.shape[1]} columns of {path}")
    y = table[:, label_column]
    x = np.delete(table, label_column % table.shape[1], axis=1)
    return x, y


def _is_numeric_row(row: str) -> bool:
    try:
        [float(v) for v in row.split(",")]
    except ValueError:
        return False
    return True


def _as_samples(path: Path, x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        raise BadInput(f"data file {path} holds Python objects; save a numeric array")
    return x.reshape(-1, 1) if x.ndim == 1 else x


def _check_values(path: Path, name: str, a: np.ndarray) -> None:
    if a.ndim == 0:
        raise BadInput(f"data file {path}: {name} is a single value, not an array of samples; "
                       "save one sample per row")
    if a.size == 0 or len(a) == 0:
        raise BadInput(f"data file {path} has an empty {name}; it needs at least one sample")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_):
        raise BadInput(f"data file {path}: {name} has dtype {a.dtype}; save real numbers")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise BadInput(f"data file {path}: {name} holds {bad} NaN or infinite values; clean the data first")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


_READERS = {".npz": _read_npz, ".npy": _read_npy, ".csv": _read_csv}
