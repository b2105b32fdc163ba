"""Every exception the library lets out is a DeployKitError: the CLI maps those to one line
and an exit status (errors.py), anything else is a traceback and exit 1."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

from deploykit import errors

PACKAGE = Path(errors.__file__).parent

# Builtin exceptions raised on purpose and never let out of the module, or a contract
# that is not deploykit's: file -> why.
ALLOWED = {
    "link/serial_handlers/protocol_virtual.py": "pyserial's handler contract: ValueError for a bad URL",
    "model/tflite_model.py": "_read's ValueErrors become BadInput naming the file in parse()",
    "firmware/project_dir.py": "read_marker's ValueErrors become BadInput naming the marker",
    "model/isolated.py": "_receive's EOFError is caught in run_isolated (the probe process is restarted)",
}


def _builtin_raises(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.id if isinstance(target, ast.Name) else None
            if name and isinstance(getattr(builtins, name, None), type) \
                    and issubclass(getattr(builtins, name), BaseException) \
                    and name not in ("KeyboardInterrupt", "SystemExit", "NotImplementedError"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: raise {name}")
    return found


def test_the_library_raises_only_deploykit_errors():
    stray = [hit for path in sorted(PACKAGE.rglob("*.py"))
             if path.relative_to(PACKAGE).as_posix() not in ALLOWED for hit in _builtin_raises(path)]
    assert stray == [], "raise a deploykit.errors type instead:\n" + "\n".join(stray)


def test_rig_errors_are_one_class():
    """errors.py once defined RigError twice, so `except RigError` missed DeviceError."""
    for cls in (errors.DeviceError, errors.ToolError, errors.DiskError, errors.NoBoardFound,
                errors.MissingPackage):
        assert issubclass(cls, errors.RigError) and cls.exit_code == errors.EXIT_RIG
