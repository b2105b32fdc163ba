"""report.json content: agreement, accuracy, latency, arena, throughput, faults.

Key names are part of the interface (scripts and CI read them):
samples, simulated; agreement.tflm_host|desktop.{exact_fraction, max_abs_steps,
mean_abs_steps, mae, rmse, cosine}; accuracy.float|desktop|device.*;
latency.cycles|us|round_trip_us.{mean, p50, p90, p99, max, stdev};
arena.configured|used|estimate|recommended;
throughput.samples_per_s|wire_limit_samples_per_s|link_efficiency;
faults.retries|crc_errors|resyncs|resets|reconnects|unknown_frames|rejected_results;
link.{board, kind, bytes_per_s, source, nominal_baud} (set by harness/run.py from the board file).
resumed.{samples, of, earlier_run_at} (resumed_samples = resumed.samples).
With `hil run --op-timing/--layer-diff` (harness/diagnostics.py, added by run_hil):
op_timing.{records, simulated, timer, total_cycles_p50, ops[{index, op, op_code, inputs,
outputs, macs, cycles_p50, share, macs_per_cycle}]}; layer_diff.{asked, note,
records[{record, first_diverging, growth, ops}]}.
accuracy for --task anomaly: {task, float|desktop|device: {auc, samples, mean_score_normal,
mean_score_anomalous}} (ROC AUC, label 1 = anomalous; aggregate.anomaly_figures).
Agreement and accuracy use the first output tensor (labels y are its). A model with several
outputs also gets outputs[{output, name, agreement.tflm_host|desktop.*, vs_float.device|desktop.
{mae, rmse, max_error}}] (None for one output). Nothing here holds the rows: see aggregate.py.
"""

from __future__ import annotations

from deploykit.model import metrics
from deploykit.report.aggregate import KEEP_POINTS, RowAggregator, anomaly_figures, latency_columns
from deploykit.report.stats import distribution, histogram, recommended_arena

SCHEMA = "deploykit.hil-report/1"

__all__ = ["KEEP_POINTS", "SCHEMA", "build_report", "new_aggregator"]


def new_aggregator(manifest, inputs, refs: dict) -> RowAggregator:
    """An aggregator for rows of this model and data (feed it with .add(row), at most once per sample)."""
    spec = manifest["outputs"][0]
    y = inputs.y
    task = (manifest.data.get("task") or metrics.infer_task(y, spec["shape"])) if y is not None else None
    return RowAggregator(spec, refs, y, task, manifest["outputs"])


def build_report(*, manifest, inputs, rows, refs: dict, hello, faults: dict, throughput: dict,
                 estimate: int | None, data_path=None, resumed: int = 0,
                 resumed_from: str | None = None, aggregator: RowAggregator | None = None) -> dict:
    """The report dict from the rows of a run and the reference predictions.

    `rows` holds at most one row per sample, in any order, and is read one row at a time
    (a list, or harness.results.Rows streaming results.jsonl): for the aggregates, unless
    `aggregator` was fed them already as they arrived, and for the latency percentiles.
    `resumed` rows came from an earlier run started at `resumed_from`.
    """
    if aggregator is None:
        aggregator = new_aggregator(manifest, inputs, refs)
        for row in rows:
            aggregator.add(row)
    figures = aggregator.finish()
    if manifest.data.get("task") == "anomaly" and inputs.y is not None and figures["samples"]:
        figures["accuracy"] = anomaly_figures(rows, figures["samples"], manifest["inputs"][0],
                                              manifest["outputs"][0], inputs.x, inputs.y, refs)
    columns = latency_columns(rows, figures["samples"])
    report = {
        "schema": SCHEMA,
        "samples": figures["samples"],
        "samples_failed": figures["samples_failed"],
        "failures": figures["failures"],
        "resumed": {"samples": int(resumed), "of": figures["samples"] + figures["samples_failed"],
                    "earlier_run_at": resumed_from if resumed else None},
        "resumed_samples": int(resumed),
        "simulated": bool(hello.simulated),
        "device": _device(hello),
        "model": {"name": manifest["name"], "sha256": manifest.sha256, "manifest": str(manifest.path)},
        "data": {"path": str(data_path or inputs.path), "sha256": inputs.sha256, "total": len(inputs)},
        "agreement": figures["agreement"],
        "accuracy": figures["accuracy"],
        "outputs": figures["outputs"],
        "task": manifest.data.get("task"), "class_names": manifest.data.get("class_names"),
        "accuracy_note": None if figures["accuracy"] else metrics.AGREEMENT_ONLY,
        "latency": {name: distribution(col) for name, col in columns.items()},  # exact percentiles
        "arena": {"configured": int(hello.arena_configured), "used": int(hello.arena_used),
                  "estimate": estimate, "recommended": recommended_arena(hello.arena_used)},
        "throughput": throughput,
        "faults": dict(faults),
    }
    device_acc = figures["accuracy"].get("device") or {}
    report["_plot"] = {"pairs": figures["pairs"], "confusion": device_acc.get("confusion"),
                       "us": histogram(columns["us"]), "round_trip_us": histogram(columns["round_trip_us"])}
    return report


def _device(hello) -> dict:
    firmware_id = bytes(getattr(hello, "firmware_id", b"") or b"").hex()
    return {"board_id": hello.board_id, "model_sha256": hello.model_sha256.hex(),
            "firmware_id": firmware_id or None,
            "cpu_hz": int(hello.cpu_hz), "timer": hello.timer.name,
            "protocol_version": int(hello.protocol_version), "max_payload": int(hello.max_payload),
            "rx_window": int(hello.rx_window)}
