"""Everything that touches TensorFlow/Keras, imported lazily: the only module that does.

`deploykit --help`, `inspect` and the virtual board never pay the ~3 s import. Callers get
plain numpy arrays and bytes back.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from deploykit.errors import BadInput

REP_SAMPLES = 500


def tf():
    """Import TensorFlow quietly: its C++ logs, its and absl's Python logs and the warnings of
    TensorFlow and Keras stay out of the user's output, unless the `deploykit` logger is at
    DEBUG (the CLI's --debug) or TF_CPP_MIN_LOG_LEVEL is set by the user."""
    from deploykit import extras
    extras.require("tensorflow", "loading a Keras or SavedModel model")
    loud = logging.getLogger("deploykit").isEnabledFor(logging.DEBUG)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if loud else "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow
    tensorflow.get_logger().setLevel("INFO" if loud else "ERROR")
    logging.getLogger("absl").setLevel(logging.INFO if loud else logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.INFO if loud else absl_logging.ERROR)
    if not loud:
        warnings.filterwarnings("ignore", module=LIBRARY_WARNINGS)
    return tensorflow


LIBRARY_WARNINGS = r"(tensorflow|keras|tf_keras|absl|ml_dtypes|google\.protobuf)(\.|$)"


def keras():
    tf()
    import keras as k
    return k


def model_format(path: Path) -> str:
    """'keras', 'h5', 'saved_model' or 'tflite' from the path; BadInput otherwise."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        raise BadInput(f"directory {path} is not a SavedModel (no saved_model.pb); "
                       "give .keras, .h5, SavedModel or .tflite")
    suffix = path.suffix.lower()
    formats = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".tflite": "tflite"}
    if suffix not in formats:
        raise BadInput(f"{path} is not a model file (suffix {suffix or 'none'!r}); "
                       "give .keras, .h5, a SavedModel directory or .tflite")
    return formats[suffix]


def load_keras(path: Path):
    """Load a .keras/.h5 model for inference; BadInput if the file is not one.

    Cached per (path, mtime, size): convert needs the model for its shape, the conversion
    and the report, and loading costs a good part of a second."""
    st = Path(path).stat()
    return _load_keras(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_keras(path: str, mtime_ns: int, size: int):
    try:
        with _quiet():
            return keras().models.load_model(str(path), compile=False)
    except Exception as exc:
        raise BadInput(_keras_load_problem(path, exc)) from exc


_MISSING_CLASS = re.compile(r"(?:Could not locate (?:class|function) |Unknown (?:layer|object): )'([^']+)'")


def _keras_load_problem(path: str, exc: Exception) -> str:
    """One whole line: a custom layer (Keras needs its Python code) named, with Keras' own
    sentence about it (without the config dump Keras appends); else Keras' first line."""
    text = " ".join(str(exc).split())
    missing = _MISSING_CLASS.search(text)
    if not missing:
        return f"{path} could not be loaded as a Keras model ({_first_line(exc)}); give a model saved with model.save()"
    said = text[missing.start():].split(" Full object config:")[0].split(" config={")[0].rstrip(". ")
    return (f"{path} uses the custom layer or object {missing[1]!r}, which Keras cannot rebuild without the "
            f"Python code that defines it (Keras: {said}); export the model where that code is imported, "
            "e.g. with model.export(DIR) to a SavedModel or to a .tflite, and convert that")


def input_specs(path: Path, fmt: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape without the batch dimension) of each model input, in the model's order;
    every dimension must be fixed. A SavedModel must have one input (its signature gives
    no order to several)."""
    if fmt == "saved_model":
        spec = _saved_model_spec(path)[1]
        found = [(str(spec.name), tuple(spec.shape[1:]))]
    else:
        found = [(str(t.name).split(":")[0], tuple(t.shape[1:])) for t in load_keras(path).inputs]
    for name, shape in found:
        if any(d is None for d in shape):
            which = f" input {name!r}" if len(found) > 1 else ""
            raise BadInput(f"{path}{which} has shape {['batch', *shape]} with unknown dimensions; TFLM needs "
                           "fixed shapes, so export the model with a fixed input shape (only the batch may vary)")
    return [(name, tuple(int(d) for d in shape)) for name, shape in found]


def input_shape(path: Path, fmt: str) -> tuple[int, ...]:
    """The input shape of a single-input model, without the batch dimension."""
    specs = input_specs(path, fmt)
    if len(specs) != 1:
        raise BadInput(f"{path} has {len(specs)} inputs; use input_specs")
    return specs[0][1]


def convert(path: Path, fmt: str, mode: str, rep_x, unroll: bool = False) -> bytes:
    """Convert to TFLite with batch fixed to 1 (no SHAPE/STRIDED_SLICE/PACK ops).

    rep_x: the representative inputs, one array per model input (a list, in the model's
    input order) or one array for a single-input model; None for float32.
    unroll: convert a clone of a Keras model whose recurrent layers are unrolled (same
    weights), for when the fused LSTM path crashes the converter.
    A Keras model's converted inputs and outputs are put back in the Keras order (the
    converter sorts them by name: model/io_order.py)."""
    t = tf()
    converter, names, output_keys = _converter_and_order(t, Path(path), fmt, unroll)
    if mode != "float32":
        converter.optimizations = [t.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(rep_x, names)
        converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Per-tensor weights for dense layers: the TFLM ports boards/ pins (TFLM of 2022 and
        # mid-2024; per-channel FULLY_CONNECTED arrived in TFLM on 2024-09-27) and CMSIS-NN's
        # per-tensor FC apply one scale, so per-channel dense weights give wrong outputs.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if mode == "int8":
        converter.inference_input_type = t.int8
        converter.inference_output_type = t.int8
    try:
        with _quiet():
            model = bytes(converter.convert())
    except Exception as exc:
        raise BadInput(f"the TFLite converter refused {path} in mode {mode} ({_first_line(exc)}); "
                       "use ops TFLite supports or try --quantize float32") from exc
    if fmt == "saved_model":
        return model
    from deploykit.model.io_order import in_source_order
    return in_source_order(model, names, output_keys)


def predict_float(path: Path, fmt: str, x) -> np.ndarray:
    """Float predictions of the source model's first output on float inputs."""
    return predict_float_all(path, fmt, x)[0]


def predict_float_all(path: Path, fmt: str, xs) -> list[np.ndarray]:
    """Float predictions of the source model (Keras or SavedModel), one array per output in
    the model's order; xs: one float array per input (a list) or one array."""
    xs = [np.asarray(x, dtype=np.float32) for x in (xs if isinstance(xs, list | tuple) else [xs])]
    if fmt == "saved_model":
        fn, spec = _saved_model_spec(path)
        out = fn(**{spec.name: tf().constant(xs[0])})
        return [np.asarray(v) for v in out.values()]
    model = load_keras(path)
    out = model(xs if len(xs) > 1 else xs[0], training=False)
    if isinstance(out, dict):   # named outputs: in the order the model returns them, as convert orders them
        out = list(out.values())
    return [np.asarray(o) for o in (out if isinstance(out, list | tuple) else [out])]


def has_recurrent_layers(path: Path) -> bool:
    """True for a Keras model with an LSTM, GRU or other RNN layer (not for SavedModels)."""
    return any(isinstance(layer, keras().layers.RNN) for layer in _all_layers(load_keras(path)))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _unrolled(model):
    """A clone whose recurrent layers run unrolled, with the same weights."""
    k = keras()

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, k.layers.RNN):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = k.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _fixed_batch_converter(t, path: Path, fmt: str, unroll: bool = False):
    """The converter for the model with batch 1 (see _converter_and_order)."""
    return _converter_and_order(t, path, fmt, unroll)[0]


def _converter_and_order(t, path: Path, fmt: str, unroll: bool = False):
    """The converter for the model with batch 1, the names of its inputs in order (a Keras
    model's own input names, which become the converted signature's keys) and, for a model
    returning a dict, its output keys in the order it returns them (None otherwise)."""
    if fmt == "saved_model":
        fn, spec = _saved_model_spec(path)
        fixed = t.TensorSpec((1,) + tuple(spec.shape[1:]), spec.dtype, name=spec.name)
        wrapped = t.function(lambda x: fn(**{spec.name: x})).get_concrete_function(fixed)
        return t.lite.TFLiteConverter.from_concrete_functions([wrapped]), [str(spec.name)], None
    k = keras()
    model = _unrolled(load_keras(path)) if unroll else load_keras(path)
    specs = input_specs(path, fmt)
    inputs = [k.Input(batch_shape=(1, *shape), name=name) for name, shape in specs]
    outputs = model(inputs if len(inputs) > 1 else inputs[0])
    wrapper = k.Model(inputs if len(inputs) > 1 else inputs[0], outputs)
    keys = [str(key) for key in outputs] if isinstance(outputs, dict) else None
    return t.lite.TFLiteConverter.from_keras_model(wrapper), [name for name, _ in specs], keys


def _saved_model_spec(path: Path):
    try:
        loaded = tf().saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except Exception as exc:
        raise BadInput(f"{path} could not be loaded as a SavedModel ({_first_line(exc)}); "
                       "export it with tf.saved_model.save or model.export") from exc
    specs = list(fn.structured_input_signature[1].values())
    if len(specs) != 1:
        raise BadInput(f"SavedModel {path} has {len(specs)} inputs; deploykit converts several-input models "
                       "from Keras: save the model with model.save('model.keras') and convert that")
    fn._deploykit_keep = loaded  # keep variables alive with the function
    return fn, specs[0]


def _representative(x, names: list[str] | None = None):
    """The calibration samples: a list of one array for one input, a dict keyed by the
    signature's input names for several (the converter's own order is by name, not Keras')."""
    if x is None:
        raise BadInput("int8 quantization needs representative data; give --rep-data or --data")
    xs = [np.asarray(a[:REP_SAMPLES], dtype=np.float32) for a in (x if isinstance(x, list | tuple) else [x])]

    def gen():
        for i in range(len(xs[0])):
            rows = [a[i][None, ...] for a in xs]
            yield rows if len(rows) == 1 or not names else dict(zip(names, rows, strict=True))
    return gen


@contextlib.contextmanager
def _quiet():
    """Silence Keras' export prints, converter warnings and the converter's C-level
    stderr chatter; errors still arrive as exceptions."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__  # whole: a cut sentence hides the cause
