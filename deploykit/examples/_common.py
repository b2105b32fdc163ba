"""What the example trainers share: seeding and writing the model and data files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def seeded_keras(seed: int):
    """Keras with Python, numpy and TensorFlow seeded, for repeatable training."""
    from deploykit.model import tf_backend
    keras = tf_backend.keras()
    keras.utils.set_random_seed(seed)
    return keras


def save(outdir: Path, name: str, model, rep_x, test_x, test_y, class_names=None) -> dict:
    """Write NAME.keras, NAME_rep.npz (x) and NAME_test.npz (x, y, and the class names of a
    classifier, which convert records in the manifest for the reports); return their paths."""
    paths = {"model": outdir / f"{name}.keras", "rep_data": outdir / f"{name}_rep.npz",
             "test_data": outdir / f"{name}_test.npz"}
    model.save(paths["model"])
    np.savez(paths["rep_data"], x=np.asarray(rep_x, np.float32))
    names: dict[str, Any] = {"class_names": np.asarray(class_names, dtype=str)} if class_names else {}
    np.savez(paths["test_data"], x=np.asarray(test_x, np.float32), y=test_y, **names)
    return paths
