"""Data files: .npz / .npy / .csv in, validated arrays out; BadInput for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.errors import BadInput
from deploykit.model.datafiles import check_fits, input_arrays, load_data


def test_npz_with_labels(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.arange(6, dtype=np.float32).reshape(3, 2), y=np.array([0, 1, 0]))
    d = load_data(p)
    assert d.x.shape == (3, 2) and d.y.tolist() == [0, 1, 0] and d.path == p


def test_npy_one_dimensional_becomes_samples(tmp_path):
    p = tmp_path / "d.npy"
    np.save(p, np.linspace(0, 1, 5))
    d = load_data(p)
    assert d.x.shape == (5, 1) and d.y is None


def test_csv_with_header_and_label_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,label\n1,2,0\n3,4,1\n\n5,6,1\n")
    d = load_data(p, label_column=2)
    assert d.x.tolist() == [[1, 2], [3, 4], [5, 6]] and d.y.tolist() == [0, 1, 1]
    d = load_data(p, label_column=-1)
    assert d.y.tolist() == [0, 1, 1]


@pytest.mark.parametrize("writer, words", [
    (lambda p: np.savez(p, x=np.zeros((0, 2))), "empty"),
    (lambda p: np.savez(p, inputs=np.zeros((3, 2))), "no array for input 0 ('x' or 'x0'"),
    (lambda p: np.savez(p, x=np.array([[1.0], [np.nan]])), "NaN"),
    (lambda p: np.savez(p, x=np.ones((2, 1)), y=np.array([np.inf, 1])), "NaN or infinite"),
    (lambda p: np.savez(p, x=np.ones((3, 1)), y=np.ones(2)), "3 inputs but 2 labels"),
    (lambda p: p.write_bytes(b"PK\x03\x04 garbage that is not a zip"), "cannot be read"),
    (lambda p: np.savez(p, x=np.float32(5.0)), "single value"),
    (lambda p: np.savez(p, x=np.ones((2, 1)), y=np.int64(1)), "y is a single value"),
    (lambda p: np.savez(p, x=np.ones((2, 1), np.complex64)), "real numbers"),
])
def test_bad_npz(tmp_path, writer, words):
    p = tmp_path / "d.npz"
    writer(p)
    with pytest.raises(BadInput, match=words.replace("(", r"\(")):  # a data file is read against a model's inputs
        input_arrays(load_data(p), [{"name": "in", "shape": [1, 2]}])


def test_bad_paths_and_suffixes(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_data(tmp_path / "missing.npz")
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(BadInput, match="suffix"):
        load_data(tmp_path / "d.json")
    (tmp_path / "e.csv").write_text("a,b\n")
    with pytest.raises(BadInput, match="empty"):
        load_data(tmp_path / "e.csv")
    (tmp_path / "f.csv").write_text("1,2\n3,x\n")
    with pytest.raises(BadInput, match="cannot be read"):
        load_data(tmp_path / "f.csv")
    (tmp_path / "g.csv").write_text("1,2\n3,4\n")
    with pytest.raises(BadInput, match="outside the 2 columns"):
        load_data(tmp_path / "g.csv", label_column=5)


def test_check_fits_reshapes_flat_samples_and_names_shapes(tmp_path):
    p = tmp_path / "d.npy"
    np.save(p, np.zeros((4, 96), np.float32))
    d = load_data(p)
    assert check_fits(d, {"name": "in", "shape": [1, 32, 3]}).shape == (4, 32, 3)
    with pytest.raises(BadInput, match=r"\[96\].*\[32, 2\]"):
        check_fits(d, {"name": "in", "shape": [1, 32, 2]})
