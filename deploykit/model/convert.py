"""`deploykit convert`: a model in, model.tflite and manifest.json out.

Checks everything a user can get wrong (paths, mode, data shape and values, output
directory) before the converter runs, then analyses the result with the TFLite parser
and TFLM on the host, and writes both files atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, cast

import numpy as np

from deploykit import __version__, extras
from deploykit.atomic import ensure_writable_dir, write_bytes, write_json
from deploykit.errors import BadInput, RigError
from deploykit.model import arena, manifest_schema, metrics, requantize, tflite_model, tflm_host
from deploykit.model.datafiles import Dataset, input_arrays, load_data
from deploykit.model.io_order import signature_names
from deploykit.model.isolated import run_isolated
from deploykit.model.manifest import SCHEMA, Manifest, load
from deploykit.model.quantization import to_float
from deploykit.model.reference import agreement, quantized_outputs_all, store_tflm_outputs
from deploykit.versions import tool_versions

MODES = ("int8", "int8-float-io", "float32")
REFUSED = {
    "dynamic": "dynamic-range quantization keeps float activations and dequantizes weights at "
               "run time (hybrid kernels), which TFLM does not run efficiently",
    "float16": "float16 weights are dequantized to float32 at run time and microcontrollers "
               "have no fp16 arithmetic, so TFLM gains nothing and runs float kernels",
}


def convert(model_path, outdir, name=None, quantize=None, rep_data=None, test_data=None,
            label_column=None, fc_per_tensor=False, task=None, class_names=None) -> Manifest:
    """Convert (or take as is) a model, analyse it and write OUTDIR/model.tflite + manifest.json.

    quantize: a mode of MODES; None is int8 for a Keras/SavedModel source, and a .tflite as it is.
    fc_per_tensor: re-quantize a .tflite's per-channel FULLY_CONNECTED weights per tensor
    (model/requantize.py), for boards whose TFLM port applies one scale."""
    from deploykit.model import tf_backend
    model_path = Path(model_path)
    if quantize is not None:
        _check_mode(quantize)
    if not model_path.exists():
        raise BadInput(f"model {model_path} does not exist; give a .keras, .h5, SavedModel directory or .tflite")
    default = model_path.stem if model_path.is_file() else model_path.name + "_out"
    outdir = Path(outdir) if outdir is not None else Path(default)
    _check_outdir(outdir)
    fmt = tf_backend.model_format(model_path)
    _require_packages(fmt, test_data)
    if fc_per_tensor and fmt != "tflite":
        raise BadInput(f"--fc-per-tensor applies to a .tflite and {model_path} is a {fmt} model; drop it: "
                       "deploykit's converter already quantizes FULLY_CONNECTED weights per tensor")
    rep = load_data(rep_data, label_column) if rep_data else None
    test = load_data(test_data, label_column) if test_data else None
    unrolled = False
    requant: dict[str, Any] | None = None  # {"before": the .tflite bytes, "changed": requantize's report}
    if fmt == "tflite":
        model = _read_tflite(model_path)
        parsed = tflite_model.parse(model, str(model_path))
        _check_tflite_mode(model_path, parsed, quantize)
        if fc_per_tensor:
            requant = {"before": model}
            model, requant["changed"] = requantize.fc_per_tensor(model, str(model_path))
            parsed = tflite_model.parse(model, str(model_path))
    else:
        model, parsed, unrolled = _convert_source(tf_backend, model_path, fmt, quantize or "int8", rep, test)
    return _finish(model, parsed, outdir, name or model_path.stem, fmt, model_path, rep, test, label_column,
                   unrolled, requant, task, class_names)


def _require_packages(fmt: str, test_data) -> None:
    """One line naming the extra when this is the light install (no TensorFlow, no TFLM)."""
    extras.require("tflite_micro", "`deploykit convert` (it measures the arena in TFLM)", "convert")
    if fmt != "tflite":
        extras.require("tensorflow", f"converting a {fmt} model", "convert")
    if test_data:
        extras.require("ai_edge_litert", "the float-versus-quantized report on --data", "convert")


def _check_mode(mode: str) -> None:
    if mode in REFUSED:
        raise BadInput(f"--quantize {mode} is refused for microcontroller targets: {REFUSED[mode]}; use int8")
    if mode not in MODES:
        raise BadInput(f"--quantize {mode!r} is not a mode; choose one of {', '.join(MODES)}")


def _check_outdir(outdir: Path) -> None:
    """Fail before converting if OUTDIR cannot be created or written, without creating it."""
    probe = outdir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise BadInput(f"output directory {outdir}: {probe} is a file, not a directory; choose another with -o")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"output directory {outdir} cannot be written ({probe} is not writable); choose another with -o")


def _check_tflite_mode(path: Path, parsed, asked: str | None) -> None:
    """A .tflite is taken as it is: asking for another mode is refused, never silently ignored."""
    mode = _mode_of(parsed)
    if asked is not None and asked != mode:
        raise BadInput(f"{path} is already a {mode} model and deploykit does not re-quantize a .tflite; "
                       f"convert the Keras/SavedModel it came from with --quantize {asked}, "
                       f"or drop --quantize to run it as {mode}")


def _read_tflite(path: Path) -> bytes:
    if path.is_dir():
        raise BadInput(f"{path} is a directory, not a .tflite file")
    return path.read_bytes()


def _convert_source(tf_backend, path, fmt, mode, rep: Dataset | None, test: Dataset | None):
    """The source's inputs (names, shapes) check the data before the converter runs; the
    representative data is one array per input, in the model's input order."""
    specs = [{"name": name, "shape": [1, *shape]} for name, shape in tf_backend.input_specs(path, fmt)]
    rep_x = input_arrays(rep, specs) if rep else None
    if test:
        input_arrays(test, specs)
    if mode != "float32" and rep_x is None:
        if test is None:
            arrays = "array x" if len(specs) == 1 else f"arrays x0..x{len(specs) - 1} (one per input)"
            raise BadInput(f"--quantize {mode} needs representative data: give --rep-data FILE "
                           f"(or --data FILE), an .npz with {arrays}")
        rep_x = input_arrays(test, specs)
    model, unrolled = _convert_contained(tf_backend, path, fmt, mode, rep_x)
    return model, tflite_model.parse(model, f"converted {path}"), unrolled


def _convert_contained(tf_backend, path, fmt, mode, rep_x) -> tuple[bytes, bool]:
    """TensorFlow's converter in a child process: a crash in its C++ (TF 2.21 segfaults on the
    int8 fused LSTM) becomes one line. A Keras model with recurrent layers gets one more try
    as a clone with the layers unrolled (same weights), which converts where the fused op crashes.
    Returns the .tflite bytes and whether the unrolled clone was used."""
    first = run_isolated(tf_backend.convert, path, fmt, mode, rep_x)
    if first.ok:
        return cast(bytes, first.value), False
    first.reraise()  # the converter refused the model: BadInput with its reason
    if fmt in ("keras", "h5") and tf_backend.has_recurrent_layers(path):
        retry = run_isolated(tf_backend.convert, path, fmt, mode, rep_x, True)
        if retry.ok:
            return cast(bytes, retry.value), True
        retry.reraise()
    raise RigError(f"TensorFlow's converter crashed ({first.status}) on {path} in mode {mode}; "
                   "try --quantize float32 or --quantize int8-float-io, or replace the op it fails on")


def _finish(model, parsed, outdir, name, fmt, model_path, rep, test, label_column, unrolled=False,
            requant=None, task=None, class_names=None) -> Manifest:
    """Analyse the .tflite, then write model.tflite and manifest.json (each atomically)."""
    _check_task(task)
    if class_names is not None:
        metrics.check_class_names(class_names, int(parsed.outputs[0]["shape"][-1]))
    tflm_host.check_ops_supported(model, parsed)
    measured = tflm_host.measure_arena(model)
    report = _report(model, parsed, fmt, model_path, test, task) if test else None
    if report is not None and requant and requant["changed"]:
        report["fc_per_tensor"] = requantize.before_after(requant["before"], model, parsed, test)
    data = {
        "schema": SCHEMA, "name": name, "model_file": "model.tflite",
        "model_sha256": hashlib.sha256(model).hexdigest(), "model_bytes": len(model),
        "quantization": _mode_of(parsed), "task": task or (report["task"] if report else None),
        "class_names": class_names,
        "inputs": parsed.inputs, "outputs": parsed.outputs,
        "ops": parsed.op_table(), "macs_total": parsed.macs_total,
        "arena": _arena_section(measured, parsed),
        "source": {"model": _rel(model_path, outdir), "model_format": fmt,
                   "rep_data": _rel(rep.path, outdir) if rep else None,
                   "test_data": _rel(test.path, outdir) if test else None,
                   "label_column": label_column, "recurrent_unrolled": unrolled,
                   "fc_per_tensor": {"requantized": requant["changed"]} if requant else None},
        "report": report, "host_reference": _host_reference(), "created_by": f"deploykit {__version__}",
        "tools": tool_versions(),  # the report's versions section: TensorFlow as converted
    }
    if class_names is None:  # --class-names wins; else the test data's own names, if it has them
        data["class_names"] = _class_names(test, parsed)
    problem = manifest_schema.problem(data, outdir)  # the checks load() applies, before writing
    if problem:
        raise BadInput(f"model {model_path} cannot go through deploykit's wire protocol: {problem}")
    ensure_writable_dir(outdir)
    if test:  # TFLM-host outputs for hosts without tflite-micro (the light install)
        data["tflm_reference"] = store_tflm_outputs(outdir, model, parsed.inputs, _test_inputs(model, parsed, test))
    write_bytes(outdir / "model.tflite", model)
    write_json(outdir / "manifest.json", data)
    return load(outdir / "manifest.json")


def _host_reference() -> dict:
    """Versions of the desktop runtimes the figures come from; the board side is its
    boards/*.toml lib_deps ref (TFLM of 2022 to mid-2024, where the host wheel is newer)."""
    from importlib.metadata import PackageNotFoundError, version
    found: dict[str, str | None] = {}
    for key, dist in (("tflite_micro", "tflite-micro"), ("ai_edge_litert", "ai-edge-litert")):
        try:
            found[key] = version(dist)
        except PackageNotFoundError:
            found[key] = None
    return found


def _class_names(test, parsed) -> list[str] | None:
    """The test data's class names (its .npz `class_names`), when there is one per output element."""
    from deploykit.model.datafiles import read_class_names
    names = read_class_names(test.path) if test else None
    classes = int(np.prod(parsed.outputs[0]["shape"][1:])) if names else 0
    return names if names and len(names) == classes else None


def _arena_section(measured: dict, parsed) -> dict:
    """Measured host figures (labelled as such) and the 32-bit projections."""
    return {"host_recorded": measured["host_recorded"], "host_min": measured["host_min"],
            "head": measured["head"], "tail": measured["tail"],
            "categories": measured["categories"],
            "projections": arena.project(measured, parsed), "projection_basis": arena.BASIS}


def _mode_of(parsed) -> str:
    """The manifest's quantization label, from the I/O dtypes and the tensors inside: int16
    I/O is the 16-bit-activation recipe (int16x8), uint8 I/O TF's uint8 wrapper around int8."""
    io = {t["dtype"] for t in parsed.inputs + parsed.outputs}
    inner = {t.dtype for t in parsed.tensors}
    if "int16" in io and io <= {"int8", "int16"}:
        return "int16x8"
    if "uint8" in io and io <= {"int8", "uint8"}:
        return "uint8"
    if io <= {"int8"}:
        return "int8"
    if inner & {"int8", "int16"}:
        return "int8-float-io"
    return "float32"


def _check_task(task) -> None:
    if task is not None and task not in metrics.TASK_CHOICES:
        raise BadInput(f"--task {task!r} is not one of {', '.join(metrics.TASK_CHOICES)}")


def _test_inputs(model: bytes, parsed, test: Dataset) -> list[np.ndarray]:
    """The test data's arrays, one per input of the .tflite (x<i>, tensor or signature names)."""
    names = signature_names(model)
    return input_arrays(test, parsed.inputs, [names.get(i) for i in parsed.input_indices])


def _report(model, parsed, fmt, model_path, test: Dataset, forced_task=None) -> dict:
    """Float-versus-quantized report on the test data (TFLM-host runs the quantized model).
    The task's figures are the first output's (labels y are its); a model with several
    outputs gets `outputs`, per output: TFLM-host against LiteRT and against the float model."""
    from deploykit.model import tf_backend
    spec_out = parsed.outputs[0]
    xs = [x.astype(np.float32) for x in _test_inputs(model, parsed, test)]
    if test.y is not None and forced_task != "anomaly":
        metrics.check_labels(test.y, spec_out["shape"], test.path)
    tflm, litert = quantized_outputs_all(model, parsed.inputs, xs)
    quant = to_float(tflm[0], spec_out)
    floats = tf_backend.predict_float_all(model_path, fmt, xs) if fmt != "tflite" else None
    task = forced_task or metrics.infer_task(test.y, spec_out["shape"])
    if task in ("classification", "regression", "anomaly") and test.y is None:
        raise BadInput(f"--task {task} needs labels in {test.path}; give y (or --label-column) or --task none")
    first = floats[0] if floats is not None else None
    report = (metrics.compare(task, test.y, first, quant, xs[0]) if task
              else metrics.agreement_report(first, quant, len(xs[0])))
    report["size"] = _sizes(model_path, model, fmt, tf_backend)
    report["tflm_host_vs_litert"] = agreement(tflm[0], litert[0], spec_out["scale"], spec_out["zero_point"])
    if len(parsed.outputs) > 1:
        report["outputs"] = [_output_figures(k, spec, tflm[k], litert[k], floats[k] if floats is not None else None)
                             for k, spec in enumerate(parsed.outputs)]
    return report


def _output_figures(k: int, spec: dict, tflm: np.ndarray, litert: np.ndarray, floats) -> dict:
    """One output's agreement of TFLM-host with LiteRT and, given the float model, the
    quantized model's error against it (MAE, RMSE, max abs)."""
    figures = {"output": k, "name": spec["name"],
               "tflm_host_vs_litert": agreement(tflm, litert, spec["scale"], spec["zero_point"]),
               "quantized_vs_float": None}
    if floats is not None:
        figures["quantized_vs_float"] = metrics.errors(to_float(tflm, spec), floats)
    return figures


def _sizes(model_path: Path, model: bytes, fmt: str, tf_backend) -> dict:
    source = sum(p.stat().st_size for p in model_path.rglob("*") if p.is_file()) if model_path.is_dir() \
        else model_path.stat().st_size
    sizes = {"source_bytes": int(source), "tflite_bytes": len(model)}
    if fmt in ("keras", "h5"):
        sizes["float_weight_bytes"] = int(tf_backend.load_keras(model_path).count_params() * 4)
    return sizes


def _rel(path: Path, outdir: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(outdir).resolve())
