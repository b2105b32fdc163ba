"""What a report says besides the measurements: does the program fit the board, which
versions made it, when, on which host and port, and the names of the classes.

`add_context()` adds report.json keys (part of the interface):
fit.{source, board, flash, ram, arena, basis}: flash and ram are {used, limit, margin,
used_fraction} in bytes against the board file's limits, from the PlatformIO build
(build.json) when the firmware was built, else estimated (model bytes + the board
file's runtime estimate; arena configured + runtime RAM estimate); arena {used, configured}.
versions.{deploykit, tensorflow, tflite_micro, board_tflm_library}; host.{name, port,
utc_offset (of started_at, the host's local time)};
classes (class names, from the manifest's `class_names`, else "0", "1", ...);
per_class [{class, name, samples, correct, recall, precision}] from the device's confusion.
None of this imports TensorFlow: its version comes from the manifest (recorded at
convert time) or the installed package's metadata.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from deploykit.errors import BadInput
from deploykit.versions import package_version, tensorflow_version, tool_versions


def _board(board_id):
    from deploykit.firmware.boards import load_board
    try:
        return load_board(board_id)
    except BadInput:  # a board deploykit has no file for: no limits to compare against
        return None


def read_build(path) -> dict | None:
    """build.json's sizes (pio.build_project writes it), None when absent or without sizes."""
    if not path:
        return None
    try:
        sizes = json.loads(Path(path).read_text(encoding="utf-8")).get("sizes")
    except (OSError, ValueError, AttributeError):
        return None
    return sizes if isinstance(sizes, dict) and sizes.get("flash_used") is not None else None


def _region(used, limit) -> dict:
    margin = limit - used if used is not None and limit else None
    return {"used": used, "limit": limit, "margin": margin,
            "used_fraction": used / limit if used is not None and limit else None}


def fit(manifest, board, arena_used: int, arena_configured: int, build: dict | None) -> dict | None:
    """Flash and RAM of the build (or the estimate) against the board's limits, with the margin."""
    if board is None:
        return None
    if build:
        flash, ram = build.get("flash_used"), build.get("ram_used")
        source = "build"
        basis = "PlatformIO's size report of the built firmware (build.json)"
    else:
        model_bytes = int(manifest["model_bytes"])
        flash = model_bytes + board.runtime_flash_bytes
        ram = arena_configured + board.runtime_ram_bytes
        source = "estimate"
        basis = (f"estimate: flash = model {model_bytes:,} B + runtime {board.runtime_flash_bytes:,} B; "
                 f"RAM = arena {arena_configured:,} B + runtime {board.runtime_ram_bytes:,} B "
                 f"(runtime figures from the board file {board.id}.toml)")
    return {"source": source, "board": board.id, "basis": basis,
            "flash": _region(flash, board.flash_bytes), "ram": _region(ram, board.ram_bytes),
            "arena": {"used": arena_used, "configured": arena_configured}}


def class_names(manifest, classes: int) -> list[str]:
    """The manifest's class names when it has one per class, else the indices as text."""
    names = manifest.data.get("class_names") if hasattr(manifest, "data") else None
    if isinstance(names, list) and len(names) == classes and all(isinstance(n, str) for n in names):
        return list(names)
    return [str(i) for i in range(classes)]


def per_class(confusion, names: list[str]) -> list[dict]:
    """Samples, correct, recall and precision of each class (rows true, columns predicted)."""
    out = []
    for i, row in enumerate(confusion):
        samples, correct = sum(row), row[i]
        predicted = sum(r[i] for r in confusion)
        out.append({"class": i, "name": names[i], "samples": samples, "correct": correct,
                    "recall": correct / samples if samples else None,
                    "precision": correct / predicted if predicted else None})
    return out


def add_context(report: dict, manifest, hello, port: str, build_json=None) -> dict:
    """Add fit, versions, host, classes and per_class to `report` (and the plots' labels)."""
    board = _board(hello.board_id)
    report["fit"] = fit(manifest, board, int(hello.arena_used), int(hello.arena_configured),
                        read_build(build_json))
    tools = manifest.data.get("tools") or {}
    report["versions"] = {"deploykit": tool_versions()["deploykit"],
                          "tensorflow": tools.get("tensorflow") or tensorflow_version(),
                          "tflite_micro": package_version("tflite-micro"),
                          "board_tflm_library": board.lib_deps[0] if board and board.lib_deps else None}
    # started_at is the host's local time: the offset says which
    report["host"] = {"name": platform.node(), "port": str(port), "utc_offset": time.strftime("%z")}
    confusion = ((report.get("accuracy") or {}).get("device") or {}).get("confusion")
    if confusion:
        report["classes"] = class_names(manifest, len(confusion))
        report["per_class"] = per_class(confusion, report["classes"])
    plot = report.setdefault("_plot", {})
    plot["class_names"] = report.get("classes")
    spec = manifest["outputs"][0]
    plot["pairs_unit"] = f"{spec['dtype']} steps" if spec.get("scale") and spec["dtype"].startswith(("int", "uint")) \
        else "output value"
    return report
