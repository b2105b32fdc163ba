"""What `deploykit inspect` reports about a .tflite: ops, tensors, TFLM support, arena,
and (given test data) how far TFLM-host and LiteRT agree.

Never imports TensorFlow: the parser is the flatbuffer schema, the runtime is TFLM's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.errors import BadInput
from deploykit.model import arena, requantize, tflite_model, tflm_host

if TYPE_CHECKING:  # reference (numpy figures) is imported lazily
    from deploykit.model.reference import Agreement


def inspect_model(path, test_data=None, label_column=None, boards=()) -> dict:
    """Analyse a .tflite; BadInput if it is missing, not a model, or has ops TFLM lacks.

    boards: objects with .id and .tflm_per_channel_fc (firmware.boards.Board), given by the
    caller so this model-stage module stays below firmware/."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"model {path} does not exist or is not a file; give a .tflite file")
    model = path.read_bytes()
    parsed = tflite_model.parse(model, str(path))
    tflm_host.check_ops_supported(model, parsed)
    measured = tflm_host.measure_arena(model)
    result = {"file": str(path), "size": len(model), "ops": parsed.op_table(),
              "macs_total": parsed.macs_total, "inputs": parsed.inputs, "outputs": parsed.outputs,
              "data_keys": data_keys(model, parsed),
              "tflm_supported": True,
              "arena": {"measured": {"host_recorded": measured["host_recorded"],
                                     "host_min": measured["host_min"],
                                     "categories": measured["categories"]},
                        "projected": arena.project(measured, parsed)},
              "per_channel_fc": per_channel_fc(model, path, boards), "agreement": None}
    if test_data is not None:
        per_output = desktop_agreement(model, parsed, test_data, label_column)
        result["agreement"] = per_output[0]   # the first output's, as the reports have it
        if len(per_output) > 1:
            result["agreement_per_output"] = per_output
    return result


def per_channel_fc(model: bytes, path: Path, boards=()) -> dict:
    """Per-channel FULLY_CONNECTED weights and, per board, whether its TFLM port runs them
    (ports older than TFLM of 2024-09-27 apply one scale: wrong outputs, render refuses)."""
    weights = requantize.per_channel_fc(model)
    verdict = {b.id: bool(b.tflm_per_channel_fc or not weights) for b in boards}
    return {"weights": weights,
            "boards_ok": sorted(k for k, ok in verdict.items() if ok),
            "boards_refused": sorted(k for k, ok in verdict.items() if not ok),
            "way_through": f"deploykit convert {path} --fc-per-tensor --test-data FILE" if weights else None}


def data_keys(model: bytes, parsed) -> list[list[str]]:
    """Per input, the names its array may have in an .npz of test data: x<i>, the tensor's
    name, its signature name (and x, for a single input)."""
    from deploykit.model.io_order import signature_names
    names = signature_names(model)
    specs = parsed.inputs
    keys = []
    for i, (spec, t) in enumerate(zip(specs, parsed.input_indices, strict=True)):
        first = ["x", "x0"] if len(specs) == 1 else [f"x{i}"]
        keys.append(list(dict.fromkeys([*first, spec["name"], *([names[t]] if t in names else [])])))
    return keys


def desktop_agreement(model: bytes, parsed, test_data, label_column=None) -> list[Agreement]:
    """Agreement of TFLM-host and LiteRT on the test inputs, in output quantization steps,
    one per output tensor (in order)."""
    from deploykit.model.datafiles import input_arrays, load_data
    from deploykit.model.io_order import signature_names
    from deploykit.model.reference import agreement, quantized_outputs_all
    names = signature_names(model)
    xs = input_arrays(load_data(test_data, label_column), parsed.inputs,
                      [names.get(i) for i in parsed.input_indices])
    xs = [x if x.dtype.name == spec["dtype"] else x.astype("float32")
          for x, spec in zip(xs, parsed.inputs, strict=True)]
    tflm, litert = quantized_outputs_all(model, parsed.inputs, xs)
    return [agreement(a, b, s["scale"], s["zero_point"]) for a, b, s in zip(tflm, litert, parsed.outputs, strict=True)]
