"""gestures: a Conv1D classifier on synthetic 3-axis accelerometer windows.

Four classes, 32 samples × 3 axes per window: idle (noise around gravity), wing (a
vertical W stroke), ring (a circle in the x-y plane) and slope (a tilt ramp). Conv1D →
MaxPooling1D → Flatten → Dense softmax, categorical cross-entropy, Adam, 20% validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.examples._common import save, seeded_keras

CLASSES = ("idle", "wing", "ring", "slope")
WINDOW = 32
PER_CLASS = 200
TEST_PER_CLASS = 50
EPOCHS = 15


def _window(kind: int, rng) -> np.ndarray:
    t = np.linspace(0.0, 1.0, WINDOW)
    phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)
    w = np.zeros((WINDOW, 3))
    w[:, 2] = 1.0  # gravity on z
    if kind == 1:
        w[:, 2] += amp * np.abs(np.sin(4 * np.pi * t + phase * 0.1))
    elif kind == 2:
        w[:, 0] += amp * np.cos(2 * np.pi * t + phase)
        w[:, 1] += amp * np.sin(2 * np.pi * t + phase)
    elif kind == 3:
        w[:, 0] += amp * (t - 0.5) * 2
        w[:, 2] -= amp * t * 0.5
    return (w + rng.normal(0.0, 0.15, w.shape)).astype(np.float32)


def make_data(seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    rng.shuffle(labels)
    return np.stack([_window(int(k), rng) for k in labels]), labels.astype(np.int64)


def build(keras):
    model = keras.Sequential([
        keras.Input((WINDOW, 3)),
        keras.layers.Conv1D(8, 5, activation="relu"),
        keras.layers.MaxPooling1D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(len(CLASSES), activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=16)
    return model


def train(outdir: Path, seed: int = 0, epochs: int | None = None) -> dict:
    keras = seeded_keras(seed)
    x, y = make_data(seed, PER_CLASS)
    test_x, test_y = make_data(seed + 1, TEST_PER_CLASS)
    model = build(keras)
    model.fit(x, keras.utils.to_categorical(y, len(CLASSES)), validation_split=0.2,
              epochs=epochs or EPOCHS, batch_size=16, verbose=0)
    return save(outdir, "gestures", model, x[:300], test_x, test_y, class_names=CLASSES)
