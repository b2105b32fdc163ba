"""Simulated cycles of one inference per board, under the old and the new latency model.

Run: python benchmarks/cost_model.py [--no-examples] [--measured-only] [MODEL.tflite ...]
First prints, for the ten models measured on a real Cortex-M4 build (tests/fixtures/
cortex_m4_measured.json: TFLM 90b983c, CMSIS-NN 4ab83cc, QEMU mps2-an386 -icount), the
instructions counted and the cycles the CMSIS-NN M4 boards simulate, with their ratio.
Then trains and converts the three examples (sine, linear, gestures) into a temp dir, and
builds a small Keras CNN (28×28×1: conv 3×3, depthwise 3×3, pointwise, pool, dense)
converted both to int8 and to float32. Prints, for every board file, the cycles the old
model gave (Σ MACs × the board's old cycles_per_mac + ops × overhead) and the new
per-operator model's (virtual_board/cost.py), with cycles per MAC. Nothing is timed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# boards/*.toml cycles_per_mac before issue 12 (git history), for the "old" column
OLD_CYCLES_PER_MAC = {"esp32c3_devkitm": 4.0, "esp32dev": 4.0, "esp32s3_devkitc": 3.0,
                      "nano33ble_sense": 1.5, "nano33ble_sense_rev2": 1.5, "nano_rp2040_connect": 6.0,
                      "nucleo_f767zi": 0.7, "nucleo_l4r5zi": 1.6, "pico": 6.0, "portenta_h7_m7": 0.7,
                      "teensy41": 0.7, "virtual": 4.0}


FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cortex_m4_measured.json"


def measured() -> None:
    """Simulated cycles of the M4 CMSIS-NN boards against the instructions measured."""
    sys.path.insert(0, str(FIXTURE.parent.parent))
    from test_arena_measured import MODELS  # the fixture's graphs as parsed models

    from deploykit.firmware.boards import load_board
    from deploykit.virtual_board import cost
    boards = [load_board(b) for b in ("nano33ble_sense", "nucleo_l4r5zi")]
    print("measured on Cortex-M4 builds (CMSIS-NN kernels at -Os and -O2): instructions per Invoke"
          " vs simulated cycles (ratio to -Os / to -O2)")
    print(f"  {'model':<13}{'MACs':>12}{'insns -Os':>12}{'insns -O2':>12}"
          + "".join(f"{b.id:>22}{'/Os':>6}{'/O2':>6}" for b in boards))
    for name, (model, _, device) in MODELS.items():
        i_os, i_o2 = device["cmsis_os"]["invoke_instructions"], device["cmsis"]["invoke_instructions"]
        row = f"  {name:<13}{model.macs_total:>12,}{i_os:>12,}{i_o2:>12,}"
        for b in boards:
            sim = cost.model_cycles(model, b)
            row += f"{sim:>22,}{sim / i_os:>6.2f}{sim / i_o2:>6.2f}"
        print(row)


def small_cnn(root: Path) -> list[tuple[str, bytes]]:
    """A small Keras CNN, converted by deploykit to int8 and to float32."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    keras = tf_backend.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.Conv2D(16, 1, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax")])
    model.save(root / "cnn.keras")
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    np.savez(root / "rep.npz", x=x)
    out = []
    for mode in ("int8", "float32"):
        m = convert(root / "cnn.keras", root / f"cnn_{mode}", name=f"cnn_{mode}", quantize=mode,
                    rep_data=root / "rep.npz")
        out.append((f"cnn_{mode}", m.model_bytes()))
    return out


def examples(root: Path) -> list[tuple[str, bytes]]:
    from _examples import example_manifests  # noqa: E402  (a sibling script module)
    return [(m["name"], m.model_bytes()) for m in example_manifests(root)]


def table(models: list[tuple[str, bytes]]) -> None:
    from deploykit.firmware.boards import all_boards
    from deploykit.model.tflite_model import parse
    from deploykit.virtual_board import cost
    boards = all_boards()
    for name, data in models:
        model = parse(data, name)
        macs = max(model.macs_total, 1)
        ops = model.op_table()
        print(f"\n{name}: {len(model.operators)} ops, {model.macs_total:,} MACs, "
              f"{', '.join(sorted({o.dtype for o in model.operators if o.dtype}))}")
        print(f"  {'board':<22}{'old cycles':>12}{'new cycles':>12}{'new/old':>9}{'cyc/MAC':>9}{'new µs':>10}")
        for b in boards:
            old = sum(o["macs"] * OLD_CYCLES_PER_MAC.get(b.id, b.cycles_per_mac) + o["count"] * b.op_overhead_cycles
                      for o in ops)
            new = cost.model_cycles(model, b)
            us = cost.timing_from_cycles(new, b).micros
            print(f"  {b.id:<22}{round(old):>12,}{new:>12,}{new / old:>9.1f}{new / macs:>9.1f}{us:>10,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help=".tflite files to cost as well")
    parser.add_argument("--no-examples", action="store_true", help="skip training the examples")
    parser.add_argument("--measured-only", action="store_true", help="only the measured models")
    args = parser.parse_args()
    measured()
    if args.measured_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = [] if args.no_examples else examples(root)
        models += small_cnn(root)
        models += [(p.name, p.read_bytes()) for p in args.models]
        table(models)


if __name__ == "__main__":
    main()
