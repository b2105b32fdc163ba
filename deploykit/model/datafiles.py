"""Read the data files `convert` and the harness take: .npz (x, optional y), .npy, .csv.

A model with several inputs takes an .npz with one array per input, named x0, x1, ... in
input order or by the input tensor's name as `inspect` prints it (or its signature name),
plus y, the labels of the first output: `input_arrays` matches them to the model's inputs.

Every problem a user can fix (missing file, empty, NaN, wrong shape) is a BadInput naming
the file and what to do, so nothing downstream sees bad data. A .npy (or .npz member)
header is read and checked against the bytes the file holds and MAX_DATA_BYTES before
numpy allocates anything: a damaged header claiming 373 GiB costs one line, not memory.
"""

from __future__ import annotations

import math
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from deploykit.errors import BadInput

SUFFIXES = (".npz", ".npy", ".csv")
MAX_DATA_BYTES = 2 * 2 ** 30   # a test set for a microcontroller is far smaller; split bigger ones


@dataclass
class Dataset:
    """Inputs `x` (first axis = samples), optional labels/targets `y`, and their file.

    `arrays`: every input array the file holds, by name (an .npz's members other than y and
    class_names; {"x": x} for .npy and .csv); `x` is its x, else x0, else its first array."""

    x: np.ndarray
    y: np.ndarray | None
    path: Path
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if not self.arrays:
            self.arrays = {"x": self.x}


def load_data(path, label_column: int | str | None = None) -> Dataset:
    """Load and validate a data file; raise BadInput on anything unusable.

    `label_column` (CSV only): the labels' column, an index (negative from the end) or the
    name in the CSV's header line; the other columns are the inputs."""
    path = Path(path)
    if not _is_file(path):
        raise BadInput(f"data file {path} does not exist or is not a file; give an .npz, .npy or .csv file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"data file {path} has suffix {suffix!r}; use .npz (x, optional y), .npy or .csv")
    try:
        arrays, y = _READERS[suffix](path, label_column)
    except BadInput:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"data file {path} cannot be read ({_short(exc)}); re-save it as .npz with array x") from exc
    for name, a in arrays.items():
        _check_values(path, name, a)
    x = next(arrays[k] for k in ("x", "x0", *arrays) if k in arrays)
    if y is not None:
        _check_values(path, "y", y)
        for name, a in arrays.items():
            if len(y) != len(a):
                what = "inputs" if name == "x" else f"samples in {name}"
                raise BadInput(f"data file {path} has {len(a)} {what} but {len(y)} labels in y; they must match")
    return Dataset(x=x, y=y, path=path, arrays=arrays)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as exc:  # a name too long for the file system, ...
        raise BadInput(f"data file {str(path)[:80]} cannot be looked up ({exc.strerror or exc}); "
                       "give a shorter, valid path") from exc


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
    names = [k for k in dataset.arrays if dataset.arrays[k] is x and k != "x"]
    where = f"array {names[0]!r} in {dataset.path}" if names else f"data in {dataset.path}"
    raise BadInput(
        f"{where} has samples of shape {list(have)} but the model input "
        f"{input_spec.get('name', '')!s} wants {list(want)} (tensor shape {list(input_spec['shape'])}); "
        "give data matching the model")


NOT_INPUTS = ("y", "class_names")   # .npz members that are never model inputs


def _read_npz(path: Path, label_column):
    _check_npz_headers(path)
    with np.load(path, allow_pickle=False) as npz:
        names = [n for n in npz.files if n not in NOT_INPUTS]
        if not names:
            raise BadInput(f"data file {path} has arrays {npz.files} but no 'x'; save inputs as x "
                           "(one array per input of a several-input model: x0, x1, ...) and labels as y")
        arrays = {n: _as_samples(path, npz[n]) for n in names}
        y = npz["y"] if "y" in npz.files else None
    return arrays, y


def input_arrays(dataset: Dataset, specs: list[dict], aliases: list[str | None] | None = None) -> list[np.ndarray]:
    """One array per model input, in input order, each reshaped to its tensor (check_fits).

    A single input takes x, x0 or its name; input i of several takes x<i>, its tensor name
    or `aliases[i]` (its signature name). Missing, doubly given or unmatched arrays and
    unequal sample counts are one BadInput naming the array and what is expected."""
    aliases = list(aliases or [None] * len(specs))
    if len(specs) == 1:
        key = _key_for(dataset, 0, specs[0], aliases[0], ("x", "x0"))
        return [check_fits(_named(dataset, key), specs[0])]
    if "x" in dataset.arrays:
        raise BadInput(f"data file {dataset.path} has one array x but the model has {len(specs)} inputs; "
                       f"save one array per input: {_expected(specs, aliases)}")
    keys = [_key_for(dataset, i, spec, aliases[i], (f"x{i}",)) for i, spec in enumerate(specs)]
    extra = sorted(set(dataset.arrays) - set(keys))
    if extra:
        raise BadInput(f"data file {dataset.path}: array {extra[0]!r} is none of the model's inputs; "
                       f"they are {_expected(specs, aliases)}")
    xs = [check_fits(_named(dataset, k), spec) for k, spec in zip(keys, specs, strict=True)]
    counts = {k: len(a) for k, a in zip(keys, xs, strict=True)}
    if len(set(counts.values())) > 1:
        raise BadInput(f"data file {dataset.path} has inputs of unequal sample counts "
                       f"({', '.join(f'{k}: {n}' for k, n in counts.items())}); give every input one row per sample")
    return xs


def _key_for(dataset: Dataset, i: int, spec: dict, alias: str | None, positional: tuple[str, ...]) -> str:
    """The one array name given for input i (positional names first, then the tensor's names)."""
    names = [*positional, *(n for n in (spec.get("name"), alias) if n)]
    found = list(dict.fromkeys(n for n in names if n in dataset.arrays))
    if len(found) > 1:
        raise BadInput(f"data file {dataset.path} gives input {i} twice ({', '.join(map(repr, found))}); "
                       "keep one")
    if not found:
        shape = list(spec["shape"][1:])
        raise BadInput(f"data file {dataset.path} has no array for input {i} ({' or '.join(map(repr, names))}, "
                       f"samples of shape {shape}); it holds {', '.join(map(repr, dataset.arrays)) or 'none'}")
    return found[0]


def _expected(specs: list[dict], aliases: list[str | None]) -> str:
    return ", ".join(" or ".join([f"x{i}", *(repr(n) for n in dict.fromkeys((s.get("name"), alias)) if n)])
                     + f" {list(s['shape'][1:])}" for i, (s, alias) in enumerate(zip(specs, aliases, strict=True)))


def _named(dataset: Dataset, key: str) -> Dataset:
    """The dataset seen through one of its arrays (check_fits names the file and the array)."""
    return Dataset(x=dataset.arrays[key], y=dataset.y, path=dataset.path, arrays={key: dataset.arrays[key]})


def read_class_names(path) -> list[str] | None:
    """The class names an .npz data file carries in its optional `class_names` member (one
    string per class, in the model's output order), else None. Reports show them in place
    of class indices; any other file kind has none."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = npz["class_names"] if "class_names" in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    if names is None or names.ndim != 1 or names.dtype.kind != "U":
        return None
    return [str(n) for n in names]


def _read_npy(path: Path, label_column):
    with open(path, "rb") as fh:
        _check_header(path, "", fh, path.stat().st_size)
    return {"x": _as_samples(path, np.load(path, allow_pickle=False))}, None


def _check_npz_headers(path: Path) -> None:
    """Every member's .npy header, checked before np.load reads a byte of its data."""
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as fh:
                    total += _check_header(path, f" member {info.filename[:-4]!r}", fh, info.file_size)
    if total > MAX_DATA_BYTES:
        raise BadInput(f"data file {path} holds {total:,} bytes of arrays, more than {MAX_DATA_BYTES:,}; "
                       "use a smaller test set")


def _check_header(path: Path, member: str, fh, size: int) -> int:
    """Bytes the .npy array at `fh` claims, once shown to fit the file and the limit."""
    try:
        version = npformat.read_magic(fh)
        shape, _, dtype = _HEADER_READERS[version](fh)
    except (KeyError, ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise BadInput(f"data file {path}{member} has no valid .npy header ({_short(exc)}); "
                       "re-save it with numpy.save or numpy.savez") from exc
    if dtype.hasobject:
        raise BadInput(f"data file {path}{member} holds Python objects; save a numeric array")
    claimed = math.prod(shape) * dtype.itemsize
    held = size - fh.tell()
    if claimed > held:
        raise BadInput(f"data file {path}{member} claims a {'x'.join(map(str, shape))} {dtype} array "
                       f"({claimed:,} bytes) but holds {max(held, 0):,}; the file is damaged or "
                       "truncated, save it again")
    if claimed > MAX_DATA_BYTES:
        raise BadInput(f"data file {path}{member} holds {claimed:,} bytes, more than {MAX_DATA_BYTES:,}; "
                       "use a smaller test set")
    return claimed


def _read_csv(path: Path, label_column):
    if path.stat().st_size > MAX_DATA_BYTES:
        raise BadInput(f"data file {path} is {path.stat().st_size:,} bytes, more than {MAX_DATA_BYTES:,}; "
                       "use a smaller test set")
    text = path.read_text(encoding="utf-8", errors="strict")
    rows = [line for line in text.splitlines() if line.strip()]
    header = None
    if rows and not _is_numeric_row(rows[0]):
        header, rows = [name.strip().strip('"') for name in rows[0].split(",")], rows[1:]
    if not rows:
        raise BadInput(f"data file {path} is empty; it needs one sample per row")
    table = np.array([[float(v) for v in row.split(",")] for row in rows], dtype=np.float32)
    if label_column is None:
        return {"x": table}, None
    label_column = _column_index(path, header, label_column)
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise BadInput(f"--label-column {label_column} is outside the {table.shape[1]} columns of {path}")
    y = table[:, label_column]
    x = np.delete(table, label_column % table.shape[1], axis=1)
    return {"x": x}, y


def _column_index(path: Path, header: list[str] | None, label_column) -> int:
    """An index as given; a name looked up in the header line (numeric text is an index too)."""
    if isinstance(label_column, int):
        return label_column
    text = str(label_column).strip()
    try:
        return int(text)
    except ValueError:
        pass
    if header is None:
        raise BadInput(f"--label-column {text!r} names a column but {path} has no header line; "
                       "give the column's index (0 first, -1 last)")
    if text not in header:
        raise BadInput(f"--label-column {text!r} is not a column of {path}; its header has "
                       f"{', '.join(header)}")
    return header.index(text)


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
_HEADER_READERS = {
    (1, 0): npformat.read_array_header_1_0,
    (2, 0): npformat.read_array_header_2_0,
    (3, 0): lambda fh: _private_header_reader()(fh, version=(3, 0)),  # no public reader for 3.0
}


def _private_header_reader():
    """numpy's reader for every header version (numpy.lib._format_impl from numpy 2)."""
    impl: types.ModuleType
    try:
        from numpy.lib import _format_impl as impl
    except ImportError:  # numpy 1.x
        impl = npformat
    return impl._read_array_header
