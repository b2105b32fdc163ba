"""Where the data directories (boards/, firmware_templates/) live.

In a wheel they are packaged under deploykit/_data/; in a source checkout or an editable
install they are the top-level directories of the repository.
"""

from __future__ import annotations

from pathlib import Path

from deploykit.errors import MissingPackage

_PACKAGE = Path(__file__).resolve().parent.parent  # deploykit/


def data_dir(name: str) -> Path:
    """Return the directory `name` (e.g. "boards"), packaged or from the checkout."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise MissingPackage(f"deploykit data directory {name!r} is missing; reinstall deploykit")
