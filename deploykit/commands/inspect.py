"""`deploykit inspect MODEL.tflite [--json] [--data FILE]`: ops, tensors, TFLM
support, measured and projected arena, TFLM-host vs LiteRT agreement."""

from __future__ import annotations

import json

import click

from deploykit.commands import LABEL_COLUMN, LABEL_COLUMN_HELP, Renamed, text_table


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the full analysis as JSON.")
@click.option("--data", "test_data", cls=Renamed, old=("--test-data",), type=click.Path(path_type=str),
              default=None, help="Data file (.npz/.npy/.csv) to compare TFLM-host with LiteRT on.")
@click.option("--label-column", type=LABEL_COLUMN, default=None, help=LABEL_COLUMN_HELP)
def inspect(model, as_json, test_data, label_column):
    """Show ops, tensors, TFLM support and arena of a .tflite."""
    from deploykit.firmware import fit
    from deploykit.firmware.boards import all_boards
    from deploykit.model.inspect import inspect_model
    result = inspect_model(model, test_data, label_column, boards=all_boards())
    result["board_fit"] = fit.table(result, all_boards())
    fit.check_any(result["board_fit"], model)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for line in format_report(result):
        click.echo(line)


def format_report(r: dict) -> list[str]:
    lines = [f"{r['file']}: {r['size']} bytes, {r['macs_total']} MACs, all ops supported by TFLM", ""]
    lines += text_table(("OP", "COUNT", "MACS"), [(o["op"], o["count"], o["macs"]) for o in r["ops"]])
    lines.append("")
    rows = [(kind, t["name"], t["dtype"], "x".join(map(str, t["shape"])), f"{t['scale']:.6g}", t["zero_point"])
            for kind, group in (("in", r["inputs"]), ("out", r["outputs"])) for t in group]
    lines += text_table(("", "TENSOR", "DTYPE", "SHAPE", "SCALE", "ZERO POINT"), rows)
    lines += ["", "test data (.npz): one array per input, named " + "; ".join(
        f"input {i}: " + " or ".join(repr(k) for k in keys) for i, keys in enumerate(r.get("data_keys") or []))
        + (", plus y (labels of output 0)" if len(r["outputs"]) > 1 else ", plus y (labels)")]
    m = r["arena"]["measured"]
    lines += ["", f"arena, measured on this host (TFLM Python interpreter): recorded {m['host_recorded']} B, "
              f"smallest that allocates {m['host_min']} B"]
    lines += [f"arena, projected for {cls} (32-bit build): {size} B" for cls, size in r["arena"]["projected"].items()]
    if r.get("board_fit"):  # arena (+ margin, protocol buffers) vs RAM less runtime; model vs flash less runtime
        from deploykit.firmware.fit import FIT_HEADER, table_lines
        lines += ["", *text_table(FIT_HEADER, table_lines(r["board_fit"]))]
    lines += _per_channel_fc(r.get("per_channel_fc"))
    a = r.get("agreement")
    if a:
        steps = "" if a["max_abs_steps"] is None else f"max {a['max_abs_steps']} step(s), "  # None: float outputs
        lines += ["", f"TFLM-host vs LiteRT on {a['samples']} inputs: {a['exact_fraction']:.1%} identical, "
                  f"{steps}mean abs {a['mae']:.4g}"]
        for k, o in enumerate(r.get("agreement_per_output") or []):
            steps = "" if o["max_abs_steps"] is None else f"max {o['max_abs_steps']} step(s), "
            lines.append(f"  output {k}: {o['exact_fraction']:.1%} identical, {steps}mean abs {o['mae']:.4g}")
    return lines


def _per_channel_fc(p: dict | None) -> list[str]:
    """Nothing when every FULLY_CONNECTED weight is per tensor; else who can run it and the way through."""
    if not p or not p["weights"]:
        return []
    names = ", ".join(f"{w['weights']} ({w['channels']} scales)" for w in p["weights"])
    return ["", f"per-channel FULLY_CONNECTED weights: {names}",
            f"  boards whose TFLM port runs them: {', '.join(p['boards_ok']) or 'none'}",
            f"  boards whose TFLM port applies one scale (wrong outputs; render refuses): "
            f"{', '.join(p['boards_refused']) or 'none'}",
            f"  way through: `{p['way_through']}` re-quantizes them per tensor and reports the accuracy "
            "before and after"]
