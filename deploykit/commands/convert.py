"""`deploykit convert MODEL [-o OUTDIR] [--name NAME] [--quantize MODE] [--rep-data FILE]
[--data FILE]`: quantize a model, write model.tflite + manifest.json, print a summary."""

from __future__ import annotations

import click

from deploykit.commands import LABEL_COLUMN, LABEL_COLUMN_HELP, Renamed


@click.command("convert")
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--outdir", type=click.Path(path_type=str), default=None,
              help="Output directory (default: the model's name).")
@click.option("--name", default=None, help="Model name recorded in the manifest.")
@click.option("--quantize", "mode", default=None,
              help="int8 (default) | int8-float-io | float32 (dynamic and float16 are refused for MCUs); "
                   "a .tflite is taken as it is.")
@click.option("--rep-data", type=click.Path(path_type=str), default=None,
              help="Representative inputs for int8: .npz (x), .npy or .csv.")
@click.option("--data", "test_data", cls=Renamed, old=("--test-data",), type=click.Path(path_type=str),
              default=None, help="Test data (.npz with x and y) for the float-vs-quantized report.")
@click.option("--label-column", type=LABEL_COLUMN, default=None, help=LABEL_COLUMN_HELP)
@click.option("--fc-per-tensor", is_flag=True,
              help="Re-quantize a .tflite's per-channel FULLY_CONNECTED weights per tensor, for boards "
                   "whose TFLM port applies one scale (see `deploykit inspect`); reports accuracy before and after.")
@click.option("--task", default=None, help="classification | regression | anomaly | none (default: inferred).")
@click.option("--class-names", default=None, help="a,b,c or a labels file (one name per line).")
def convert(model, outdir, name, mode, rep_data, test_data, label_column, fc_per_tensor, task, class_names):
    """Quantize a model and write model.tflite + manifest.json."""
    from deploykit.model.convert import convert as run
    from deploykit.model.metrics import parse_class_names

    manifest = run(model, outdir, name=name, quantize=mode, rep_data=rep_data,
                   test_data=test_data, label_column=label_column, fc_per_tensor=fc_per_tensor,
                   task=task, class_names=parse_class_names(class_names))
    for line in summary(manifest.data, manifest.directory):
        click.echo(line)


def summary(m: dict, where) -> list[str]:
    ops = ", ".join(f"{o['op']}×{o['count']}" for o in m["ops"])
    a = m["arena"]
    lines = [f"wrote {where}/model.tflite ({m['model_bytes']} B, {m['quantization']}) and manifest.json",
             f"ops: {ops}; {m['macs_total']} MACs",
             f"arena: measured {a['host_recorded']} B on this host; projected "
             + ", ".join(f"{k} {v} B" for k, v in a["projections"].items())]
    if (m.get("source") or {}).get("recurrent_unrolled"):
        lines.append("recurrent layers unrolled: TensorFlow's converter crashed on the fused LSTM, "
                     "so this is a clone with unroll=True and the same weights")
    r = m.get("report")
    fc = (m.get("source") or {}).get("fc_per_tensor")
    if fc is not None:
        lines.append(_fc_per_tensor(fc, (r or {}).get("fc_per_tensor"), m["source"]["model"]))
    if r and r.get("task") == "regression":
        lines.append(_regression(r))
    elif r and r.get("task") == "classification":
        lines.append(_classification(r, m["quantization"]))
    elif r and r.get("task") == "anomaly":
        lines.append(f"anomaly ROC AUC (label 1 = anomalous): quantized {r['quantized_auc']}, "
                     f"float {r.get('float_auc')}")
    elif r and r.get("note"):
        lines.append(r["note"])
    return lines


def _fc_per_tensor(fc: dict, measured: dict | None, source: str) -> str:
    if not fc["requantized"]:
        return f"--fc-per-tensor: {source} has no per-channel FULLY_CONNECTED weights; nothing changed"
    names = ", ".join(f"{c['weights']} ({c['channels']} scales)" for c in fc["requantized"])
    text = f"--fc-per-tensor: re-quantized per tensor: {names}"
    if not measured:
        return text + "; give --test-data to measure what it costs"
    a = measured["after_vs_before"]
    figure = {"classification": lambda d: f"accuracy {d['accuracy']:.3f}",
              "regression": lambda d: f"MAE {d['mae']:.4g}"}.get(measured["task"])
    if figure:
        text += f"; on {measured['samples']} test samples (TFLM-host) before {figure(measured['before'])}, " \
                f"after {figure(measured['after'])}"
    else:
        text += f"; no labels, so agreement only: on {measured['samples']} test samples"
    return text + (f"; outputs identical to the per-channel model's on {a['exact_fraction']:.1%}, "
                   f"mean abs {a['mae']:.4g}")


def _classification(r: dict, mode: str) -> str:
    text = f"accuracy on {r['samples']} test samples: converted ({mode}) {r['quantized_accuracy']:.3f}"
    if "float_accuracy" in r:  # absent when a .tflite was taken as is
        text += f", float {r['float_accuracy']:.3f}, top-1 agreement {r['top1_agreement']:.3f}"
    return text


def _regression(r: dict) -> str:
    q = r["quantized_vs_target"]
    text = f"on {r['samples']} test samples: quantized MAE {q['mae']:.4g}, RMSE {q['rmse']:.4g}"
    if "float_vs_target" in r:
        f, d = r["float_vs_target"], r["quantized_vs_float"]
        text += f"; float MAE {f['mae']:.4g}, RMSE {f['rmse']:.4g}; quantized vs float max {d['max_abs']:.4g}"
    return text
