"""linear: learn y = 2x − 1 from x = −1…4 with one Dense(1) neuron, SGD, MSE.

After training, predict(10) ≈ 19.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.examples._common import save, seeded_keras

EPOCHS = 500


def train(outdir: Path, seed: int = 0, epochs: int | None = None) -> dict:
    keras = seeded_keras(seed)
    x = np.arange(-1.0, 5.0, dtype=np.float32).reshape(-1, 1)
    y = 2 * x - 1
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=50)
    # 50 copies of the six points per epoch: the same gradient steps, far fewer epochs.
    reps = 50
    model.fit(np.tile(x, (reps, 1)), np.tile(y, (reps, 1)), batch_size=6,
              epochs=max(1, (epochs or EPOCHS) // reps), verbose=0)
    test_x = np.linspace(-1.0, 4.0, 51, dtype=np.float32).reshape(-1, 1)
    return save(outdir, "linear", model, x, test_x, 2 * test_x - 1)
