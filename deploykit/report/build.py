"""report.json content: agreement, accuracy, latency, arena, throughput, faults.

Key names are part of the interface (scripts and CI read them):
samples, simulated; agreement.tflm_host|desktop.{exact_fraction, max_abs_steps,
mean_abs_steps, mae, rmse, cosine}; accuracy.float|desktop|device.*;
latency.cycles|us|round_trip_us.{mean, p50, p90, p99, max, stdev};
arena.configured|used|estimate|recommended;
throughput.samples_per_s|wire_limit_samples_per_s|link_efficiency;
faults.retries|crc_errors|resyncs|resets|reconnects|unknown_frames.
With `hil run --op-timing/--layer-diff` (harness/diagnostics.py, added by run_hil):
op_timing.{records, simulated, timer, total_cycles_p50, ops[{index, op, op_code, inputs,
outputs, macs, cycles_p50, share, macs_per_cycle}]}; layer_diff.{asked, note,
records[{record, first_diverging, growth, ops}]}.
Agreement and accuracy use the first output tensor.
"""

from __future__ import annotations

import numpy as np

from deploykit.model import metrics
from deploykit.report.stats import distribution, recommended_arena
from deploykit.model.quantization import to_float
from deploykit.model.reference import agreement

SCHEMA = "deploykit.hil-report/1"
KEEP_POINTS = 2000  # device-versus-desktop pairs kept for the plots


def device_outputs(rows: list[dict], spec: dict) -> np.ndarray:
    """First output tensor of each row, shaped like the model output, in its dtype."""
    shape = (len(rows),) + tuple(int(d) for d in spec["shape"][1:])
    return np.asarray([r["outputs"][0] for r in rows], dtype=np.dtype(spec["dtype"])).reshape(shape)


def build_report(*, manifest, inputs, rows: list[dict], refs: dict, hello, faults: dict,
                 throughput: dict, estimate: int | None, data_path=None) -> dict:
    """The report dict from results rows (sorted by index) and reference predictions."""
    ok = [r for r in rows if "error" not in r]
    spec = manifest["outputs"][0]
    device = device_outputs(ok, spec)
    idx = np.asarray([r["index"] for r in ok], dtype=np.int64)
    scale, zp = float(spec.get("scale") or 0.0), int(spec.get("zero_point") or 0)
    report = {
        "schema": SCHEMA,
        "samples": len(ok),
        "samples_failed": len(rows) - len(ok),
        "failures": [{"index": r["index"], "error": r["error"]} for r in rows if "error" in r][:100],
        "simulated": bool(hello.simulated),
        "device": _device(hello),
        "model": {"name": manifest["name"], "sha256": manifest.sha256, "manifest": str(manifest.path)},
        "data": {"path": str(data_path or inputs.path), "sha256": inputs.sha256, "total": len(inputs)},
        "agreement": {name: _agreement(device, refs[name][idx], scale, zp)
                      for name in ("tflm_host", "desktop") if refs.get(name) is not None},
        "accuracy": _accuracy(manifest, inputs, idx, device, refs, spec),
        "latency": {"cycles": distribution(r["cycles"] for r in ok),
                    "us": distribution(r["us"] for r in ok),
                    "round_trip_us": distribution(r.get("round_trip_us") for r in ok)},
        "arena": {"configured": int(hello.arena_configured), "used": int(hello.arena_used),
                  "estimate": estimate, "recommended": recommended_arena(hello.arena_used)},
        "throughput": throughput,
        "faults": dict(faults),
    }
    report["_plot"] = _plot_data(device, refs, idx, spec, ok, report)
    return report


def _device(hello) -> dict:
    return {"board_id": hello.board_id, "model_sha256": hello.model_sha256.hex(),
            "cpu_hz": int(hello.cpu_hz), "timer": hello.timer.name,
            "protocol_version": int(hello.protocol_version), "max_payload": int(hello.max_payload),
            "rx_window": int(hello.rx_window)}


def _agreement(device: np.ndarray, ref: np.ndarray, scale: float, zp: int) -> dict:
    if len(device) == 0:
        return {}
    return agreement(device, np.asarray(ref).reshape(device.shape).astype(device.dtype), scale, zp)


def _accuracy(manifest, inputs, idx, device, refs, spec) -> dict:
    """Float model, desktop quantized and device against the labels, side by side."""
    y = inputs.y
    if y is None or len(idx) == 0:
        return {}
    y = y[idx]
    task = manifest.data.get("task") or metrics.infer_task(y, spec["shape"])
    preds = {"float": refs.get("float"), "desktop": refs.get("desktop"), "device": device}
    floats = {k: (None if v is None else _as_float(v, spec, idx if k != "device" else None))
              for k, v in preds.items()}
    out = {"task": task}
    for name, pred in floats.items():
        if pred is None:
            out[name] = None
        elif task == "classification":
            out[name] = _classification(y, pred, floats.get("desktop"))
        else:
            e = metrics.errors(pred, y)
            out[name] = {"mae": e["mae"], "rmse": e["rmse"], "max_error": e["max_abs"]}
    return out


def _as_float(pred, spec, idx) -> np.ndarray:
    pred = np.asarray(pred)
    if idx is not None:
        pred = pred[idx]
    return pred.astype(np.float32) if pred.dtype.kind == "f" else to_float(pred, spec)


def _classification(y, pred, desktop) -> dict:
    true = metrics.labels(y)
    flat = pred.reshape(len(pred), -1)
    top1 = flat.argmax(1)
    classes = flat.shape[1]
    result = {"accuracy": float((top1 == true).mean()), "confusion": metrics.confusion(true, top1, classes)}
    if desktop is not None:
        result["top1_agreement_with_desktop"] = float((top1 == desktop.reshape(len(desktop), -1).argmax(1)).mean())
    return result


def _plot_data(device, refs, idx, spec, ok, report) -> dict:
    """What the HTML plots need (removed before report.json is written)."""
    desktop = refs.get("desktop")
    pairs = None
    if desktop is not None and len(device):
        d = np.asarray(desktop)[idx].reshape(len(device), -1)[:KEEP_POINTS]
        pairs = (d.astype(np.float64).ravel(), device.reshape(len(device), -1)[:KEEP_POINTS].astype(np.float64).ravel())
    accuracy = report.get("accuracy") or {}
    device_acc = accuracy.get("device") or {}
    return {"pairs": pairs, "confusion": device_acc.get("confusion"),
            "us": [r["us"] for r in ok], "round_trip_us": [r.get("round_trip_us") for r in ok]}
