"""Example models from the reference material, each trainable on a CPU in seconds, seeded.

`train_example(name, outdir)` writes NAME.keras, NAME_rep.npz (x: representative inputs)
and NAME_test.npz (x, y: held-out test split) — files `deploykit convert` takes as is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from deploykit.errors import BadInput

EXAMPLES = ("sine", "linear", "gestures")

# Epochs of a quick training (the test suite, the benchmarks): seconds on a CPU, and the
# models still learn enough to be real (sine fits the curve, gestures classifies > 80 %).
QUICK_EPOCHS = {"sine": 16, "linear": 500, "gestures": 6}


def train_example(name: str, outdir: Path, seed: int = 0, epochs: int | None = None,
                  quick: bool = False) -> dict:
    """Train example `name` into `outdir`; return {"model", "rep_data", "test_data"} paths.

    `epochs` overrides the example's default; `quick` trains QUICK_EPOCHS[name] instead,
    the one short training the tests and benchmarks share.
    """
    if name not in EXAMPLES:
        raise BadInput(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    if quick and epochs is None:
        epochs = QUICK_EPOCHS[name]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"deploykit.examples.{name}")
    return module.train(outdir, seed=seed, epochs=epochs)
