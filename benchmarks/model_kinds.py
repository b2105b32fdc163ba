"""One small model of each kind, end to end: the table issue 11 asks for.

Run: python benchmarks/model_kinds.py [--only NAME ...] [--keep DIR]

Per kind (Keras inputs converted by `deploykit convert`; .tflite files taken as they are,
made with TF's own converter recipes; the recurrent, 640-element and multi-input models):
  - the arena projected per target class (manifest arena projections, bytes);
  - agreement with TFLM on the host as exact fractions: the device (the virtual board via
    `run_hil`, real TFLM kernels) against TFLM-host, and LiteRT on the desktop against TFLM-host;
  - float / desktop / device figures for the model's task: accuracy (classification), MAE
    (regression), ROC AUC (anomaly, label 1 = anomalous), "-" where a side does not exist
    (no float model beside a .tflite taken as is).
Every model is seeded and trains in seconds; the whole run takes a minute or two.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CLASSES = ("cortex-m-reference", "cortex-m-cmsis-nn", "esp32-esp-nn")
FEATURES = 8


def tf():
    from deploykit.model import tf_backend
    return tf_backend.tf()


def quiet():
    from deploykit.model import tf_backend
    return tf_backend._quiet()


def classes_data(n: int, seed: int):
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
    a, b = x[:, :4].sum(1), x[:, 4:].sum(1)
    return x, np.where(a > 0.5, 0, np.where(b > 0, 1, 2)).astype(np.int64)


def classifier(root: Path) -> dict:
    """A trained 3-class dense classifier saved every way, plus TF's .tflite recipes."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    x, y = classes_data(600, 0)
    model = t.keras.Sequential([t.keras.Input((FEATURES,)), t.keras.layers.Dense(16, activation="relu"),
                                t.keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    tx, ty = classes_data(200, 1)
    np.savez(root / "rep.npz", x=x[:200])
    np.savez(root / "test.npz", x=tx, y=ty)
    model.save(root / "m.keras")
    model.save(root / "m.h5")
    with quiet():
        model.export(str(root / "saved"))
    files = {"rep": root / "rep.npz", "test": root / "test.npz", "keras": root / "m.keras",
             "h5": root / "m.h5", "saved_model": root / "saved"}
    for name, data in tflite_recipes(model, x[:200]).items():
        files[name] = root / f"{name}.tflite"
        files[name].write_bytes(data)
    return files


def tflite_recipes(model, rep_x) -> dict:
    t = tf()

    def rep():
        for row in rep_x:
            yield [row[None]]

    def convert(ops=None, io=None, per_channel_dense=True):
        c = t.lite.TFLiteConverter.from_keras_model(model)
        if ops is not None:
            c.optimizations, c.representative_dataset = [t.lite.Optimize.DEFAULT], rep
            c.target_spec.supported_ops = [ops]
            c._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
        if io is not None:
            c.inference_input_type = c.inference_output_type = io
        with quiet():
            return bytes(c.convert())

    ops = t.lite.OpsSet
    i8, i16 = ops.TFLITE_BUILTINS_INT8, ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    return {"float32": convert(), "int8_per_tensor": convert(i8, t.int8, False),
            "int8_per_channel": convert(i8, t.int8), "uint8": convert(i8, t.uint8, False),
            "int16x8": convert(i16, t.int16, False)}


def lstm(root: Path) -> dict:
    """An LSTM classifier (is the sequence's mean rising?); the converter needs the unrolled clone."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12, 3)).astype(np.float32)
    y = (x[:, 6:, 0].mean(1) > x[:, :6, 0].mean(1)).astype(np.int64)
    model = t.keras.Sequential([t.keras.Input((12, 3)), t.keras.layers.LSTM(8),
                                t.keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:300], y[:300], epochs=15, verbose=0)
    model.save(root / "lstm.keras")
    np.savez(root / "lstm_rep.npz", x=x[:100])
    np.savez(root / "lstm_test.npz", x=x[300:], y=y[300:])
    return {"model": root / "lstm.keras", "rep": root / "lstm_rep.npz", "test": root / "lstm_test.npz"}


def autoencoder640(root: Path) -> dict:
    """640 samples of a 3-cycle sine of random phase (normal) or of 6 to 12 cycles (anomalous),
    through an 8-unit linear bottleneck: the reconstruction error is the score."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    steps = np.arange(640, dtype=np.float32) / 640

    def sines(n, cycles_lo, cycles_hi):
        f = rng.uniform(cycles_lo, cycles_hi, (n, 1))
        return (0.5 + 0.4 * np.sin(2 * np.pi * f * steps + rng.uniform(0, 6.28, (n, 1)))).astype(np.float32)

    train = sines(400, 3, 3)
    model = t.keras.Sequential([t.keras.Input((640,)), t.keras.layers.Dense(8), t.keras.layers.Dense(640)])
    model.compile(t.keras.optimizers.Adam(0.01), "mse")
    model.fit(train, train, epochs=30, batch_size=32, verbose=0)
    model.save(root / "ae640.keras")
    np.savez(root / "ae_rep.npz", x=train[:100])
    np.savez(root / "ae_test.npz", x=np.concatenate([sines(40, 3, 3), sines(40, 6, 12)]),
             y=np.r_[np.zeros(40), np.ones(40)].astype(np.int64))
    return {"model": root / "ae640.keras", "rep": root / "ae_rep.npz", "test": root / "ae_test.npz"}


def regression(root: Path) -> dict:
    """y = sin(x0) + x1 / 2 from 8 features (6 of them noise), a small dense regressor."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(-2, 2, (1200, FEATURES)).astype(np.float32)
    y = (np.sin(x[:, 0]) + x[:, 1] / 2).astype(np.float32)[:, None]
    model = t.keras.Sequential([t.keras.Input((FEATURES,)), t.keras.layers.Dense(32, activation="relu"),
                                t.keras.layers.Dense(1)])
    model.compile(t.keras.optimizers.Adam(0.01), "mse")
    model.fit(x[:1000], y[:1000], epochs=40, batch_size=32, verbose=0)
    model.save(root / "reg.keras")
    np.savez(root / "reg_rep.npz", x=x[:200])
    np.savez(root / "reg_test.npz", x=x[1000:], y=y[1000:])
    return {"model": root / "reg.keras", "rep": root / "reg_rep.npz", "test": root / "reg_test.npz"}


def multi_io(root: Path) -> dict:
    """Two inputs, one output (the multi-input work of issue 11, when it is merged)."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    a, b = t.keras.Input((4,), name="a"), t.keras.Input((3,), name="b")
    out = t.keras.layers.Dense(2, activation="softmax")(t.keras.layers.Concatenate()([a, b]))
    model = t.keras.Model([a, b], out)
    model.save(root / "multi.keras")
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 3)).astype(np.float32)
    np.savez(root / "multi.npz", a=xa, b=xb, y=(xa.sum(1) > 0).astype(np.int64))
    return {"model": root / "multi.keras", "rep": root / "multi.npz", "test": root / "multi.npz"}


def cnn300k(root: Path) -> dict:
    """A 48x48 image through one 128-filter convolution: ~300 KB of int8 activations, more
    than the small boards hold (run on the virtual board as a teensy41)."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((48, 48, 48, 1)).astype(np.float32)
    y = (x[:, :24].mean((1, 2, 3)) > x[:, 24:].mean((1, 2, 3))).astype(np.int64)
    model = t.keras.Sequential([t.keras.Input((48, 48, 1)),
                                t.keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
                                t.keras.layers.GlobalAveragePooling2D(), t.keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:32], y[:32], epochs=3, verbose=0)
    model.save(root / "cnn.keras")
    np.savez(root / "cnn_rep.npz", x=x[:16])
    np.savez(root / "cnn_test.npz", x=x[32:], y=y[32:])
    return {"model": root / "cnn.keras", "rep": root / "cnn_rep.npz", "test": root / "cnn_test.npz",
            "board": "teensy41"}


def fraction(figures: dict | None) -> str:
    if not figures or not figures.get("samples"):
        return "-"
    n = int(figures["samples"])
    return f"{round(figures['exact_fraction'] * n)}/{n}"


def task_figures(report: dict) -> tuple[str, str, str, str]:
    """(task, float, desktop, device) from a HIL report's accuracy section."""
    acc = report.get("accuracy") or {}
    task = acc.get("task") or report.get("task") or "none"
    key = {"classification": "accuracy", "regression": "mae", "anomaly": "auc"}.get(task)

    def cell(side):
        value = (acc.get(side) or {}).get(key) if key else None
        return "-" if value is None else f"{value:.4f}"
    label = {"classification": "accuracy", "regression": "MAE", "anomaly": "ROC AUC"}.get(task, "agreement only")
    return label, cell("float"), cell("desktop"), cell("device")


def run_kind(name: str, model, rep, test, out: Path, board: str = "virtual", **options) -> dict:
    from deploykit.harness.run import run_hil
    from deploykit.model.convert import convert
    start = time.monotonic()
    m = convert(model, out / name / "model", name=name, rep_data=rep, test_data=test, **options)
    report = run_hil(m.path, f"virtual://{m.path}?pacing=0&board={board}", warmup=0, outdir=out / name / "hil")
    projections = m["arena"]["projections"]
    label, f, d, v = task_figures(report)
    return {"kind": name, "quantization": m["quantization"],
            **{c: projections.get(c, "-") for c in CLASSES},
            "device_vs_tflm": fraction(report["agreement"].get("tflm_host")),
            "litert_vs_tflm": fraction((m["report"] or {}).get("tflm_host_vs_litert")),
            "task": label, "float": f, "desktop": d, "device": v,
            "seconds": round(time.monotonic() - start, 1)}


def kinds(root: Path) -> list[tuple[str, dict, dict]]:
    """(name, {model, rep, test}, convert options) for every kind, built lazily per family."""
    (root / "classifier").mkdir(parents=True, exist_ok=True)
    c = classifier(root / "classifier")
    plain = [(k, {"model": c[k], "rep": c["rep"], "test": c["test"]}, {})
             for k in ("keras", "h5", "saved_model")]
    as_is = [(k, {"model": c[k], "rep": None, "test": c["test"]}, {})
             for k in ("float32", "int8_per_tensor", "uint8", "int16x8")]
    per_channel = [("int8_per_channel +fc-per-tensor", {"model": c["int8_per_channel"], "rep": None,
                                                        "test": c["test"]}, {"fc_per_tensor": True})]
    return plain + as_is + per_channel


def families(root: Path):
    yield from kinds(root)
    for name, build, options in (("lstm (unrolled)", lstm, {}), ("autoencoder 640", autoencoder640,
                                 {"task": "anomaly"}), ("regression", regression, {}),
                                 ("cnn 300 KB arena (teensy41)", cnn300k, {}),
                                 ("multi-io", multi_io, {})):
        (root / name.split()[0]).mkdir(parents=True, exist_ok=True)
        yield name, build(root / name.split()[0]), options


COLUMNS = ("kind", "quantization", *CLASSES, "device_vs_tflm", "litert_vs_tflm", "task", "float", "desktop",
           "device", "seconds")


def print_table(rows: list[dict]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="kinds to run (by the start of their name)")
    parser.add_argument("--keep", type=Path, help="keep the models and reports under DIR")
    args = parser.parse_args(argv)
    from deploykit.errors import DeployKitError
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        rows, skipped = [], []
        for name, files, options in families(root):
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            try:
                rows.append(run_kind(name.split()[0], files["model"], files["rep"], files["test"], root / "runs",
                                     files.get("board", "virtual"), **options) | {"kind": name})
            except DeployKitError as exc:  # e.g. several inputs before that work is merged
                skipped.append(f"{name}: skipped: {exc}")
            print(f"done: {name}", file=sys.stderr, flush=True)
    print_table(rows)
    for line in skipped:
        print(line)
    print("arena: manifest projections in bytes per target class; device_vs_tflm: the virtual board's outputs "
          "equal to TFLM-host's (samples); litert_vs_tflm: LiteRT's on the desktop equal to TFLM-host's")


if __name__ == "__main__":
    main()
