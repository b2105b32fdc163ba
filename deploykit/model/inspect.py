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
              "tflm_supported": True,
              "arena": {"measured": {"host_recorded": measured["host_recorded"],
                                     "host_min": measured["host_min"],
                                     "categories": measured["categories"]},
                        "projected": arena.project(measured, parsed)},
              "per_channel_fc": per_channel_fc(model, path, boards), "agreement": None}
    if test_data is not None:
        result["agreement"] = desktop_agreement(model, parsed, test_data, label_column)
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


def desktop_agreement(model: bytes, parsed, test_data, label_column=None) -> Agreement:
    """Agreement of TFLM-host and LiteRT on the test inputs, in output quantization steps."""
    from deploykit.model.datafiles import check_fits, load_data
    from deploykit.model.reference import agreement, quantized_outputs
    spec_in, spec_out = parsed.inputs[0], parsed.outputs[0]
    x = check_fits(load_data(test_data, label_column), spec_in)
    if x.dtype.name != spec_in["dtype"]:
        x = x.astype("float32")
    tflm, litert = quantized_outputs(model, spec_in, x)
    return agreement(tflm, litert, spec_out["scale"], spec_out["zero_point"])
