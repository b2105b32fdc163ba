"""The three examples, trained briefly and converted, for the benchmark scripts (not timed)."""

from __future__ import annotations

from pathlib import Path


def example_manifests(root: Path) -> list:
    """Train and convert sine, linear and gestures under `root`; return their Manifests."""
    from deploykit.examples import train_example
    from deploykit.model.convert import convert
    out = []
    from deploykit.examples import EXAMPLES
    for name in EXAMPLES:
        files = train_example(name, root / "trained" / name, seed=0, quick=True)
        out.append(convert(files["model"], root / name, name=name, quantize="int8",
                           rep_data=files["rep_data"], test_data=files["test_data"]))
    return out
