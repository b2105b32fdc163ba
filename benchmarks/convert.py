"""Figures for the converter on the sine example: TensorFlow import, convert, inspect.

Goal on a 2-core machine: convert ≤ 3 s and inspect (with the arena search) ≤ 1 s, both
after TensorFlow is imported. Prints figures; asserts nothing.

    python benchmarks/convert.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    from deploykit.model import tf_backend
    _, t_import = timed(tf_backend.tf)
    from deploykit.examples import train_example
    from deploykit.model.convert import convert
    from deploykit.model.inspect import inspect_model

    with tempfile.TemporaryDirectory() as tmp:
        files, t_train = timed(lambda: train_example("sine", Path(tmp) / "train"))
        kwargs = dict(rep_data=files["rep_data"], test_data=files["test_data"])
        manifest, t_convert = timed(lambda: convert(files["model"], Path(tmp) / "out", **kwargs))
        _, t_convert_plain = timed(lambda: convert(files["model"], Path(tmp) / "out2", rep_data=files["rep_data"]))
        report, t_inspect = timed(lambda: inspect_model(manifest.model_path))
    print(f"import TensorFlow          {t_import:6.2f} s")
    print(f"train sine (not a goal)    {t_train:6.2f} s")
    print(f"convert (with report)      {t_convert:6.2f} s   goal <= 3 s")
    print(f"convert (rep data only)    {t_convert_plain:6.2f} s   goal <= 3 s")
    print(f"inspect (with arena search){t_inspect:6.2f} s   goal <= 1 s")
    print(f"arena: recorded {report['arena']['measured']['host_recorded']} B, "
          f"smallest {report['arena']['measured']['host_min']} B, projected {report['arena']['projected']}")


if __name__ == "__main__":
    main()
