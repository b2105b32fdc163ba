"""Versions of the tools that made a model or a report, read without importing them.

TensorFlow takes seconds to import: its version comes from the module when something
loaded it already, else from the installed package's metadata.
"""

from __future__ import annotations

import sys
from importlib import metadata


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` that is installed, without importing it."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def tensorflow_version() -> str | None:
    """TensorFlow's version: from the module when it is loaded already, else the package metadata."""
    module = sys.modules.get("tensorflow")
    version = getattr(module, "__version__", None) if module else None
    return version or package_version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly")


def tool_versions() -> dict:
    """What convert records in the manifest's `tools`: the versions that made the model."""
    from deploykit import __version__
    return {"deploykit": __version__, "tensorflow": tensorflow_version(),
            "tflite_micro": package_version("tflite-micro"), "ai_edge_litert": package_version("ai-edge-litert")}
