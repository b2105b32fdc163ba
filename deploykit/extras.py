"""Optional packages: whether one is installed, and one line naming the extra when not.

The light install (`pip install deploykit`) runs the harness, flash and devices on any
host next to the boards. TensorFlow, LiteRT and TFLM's Python interpreter come with
extras; TFLM's `tflite-micro` wheel exists for x86-64 Linux only.
"""

from __future__ import annotations

import importlib.util
import platform

from deploykit.errors import MissingPackage

# import name -> (what it is, the extra that installs it)
PACKAGES = {
    "tensorflow": ("TensorFlow", "convert"),
    "ai_edge_litert": ("LiteRT (ai-edge-litert)", "convert"),
    "tflite_micro": ("TFLM's Python interpreter (the tflite-micro wheel, x86-64 Linux only)", "tflm"),
}


def available(module: str) -> bool:
    """Is `module` importable? (Looks it up without importing it.)"""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str, extra: str | None = None) -> None:
    """MissingPackage, in one line, unless `module` is installed; `extra` overrides the
    extra named (`convert` needs all of `deploykit[convert]`, not only the missing part)."""
    if available(module):
        return
    what, default = PACKAGES[module]
    extra = extra or default
    if module == "tflite_micro" and not _x86_64_linux():
        raise MissingPackage(f"{purpose} needs {what}; there is no tflite-micro wheel for "
                             f"{platform.system()} {platform.machine()}, so run it on an x86-64 Linux host")
    raise MissingPackage(f"{purpose} needs {what}, which this install lacks; "
                         f"install it with `pip install 'deploykit[{extra}]'`")


def _x86_64_linux() -> bool:
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")
