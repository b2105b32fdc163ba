"""Display lives in deploykit/commands/ only; the library returns data or calls back.

An AST scan of every module outside commands/: no print() (outside an
`if __name__ == "__main__":` block of a script), no click.echo/secho, no writes to
sys.stdout/sys.stderr, no rich or click import. The exceptions are listed with why.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "deploykit"
DISPLAY_HOME = "commands"
ALLOWED = {
    # the `deploykit` entry point: turns every error into its one `deploykit: error:` line
    "cli.py": {"click", "click.echo"},
}
UI_PACKAGES = ("rich", "click")


def _is_main_block(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` (a dev script such as protocol/generate.py prints there)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    return (isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def display_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each piece of display in a module's source."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if _is_main_block(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name.split(".")[0]) for a in node.names if a.name.split(".")[0] in UI_PACKAGES)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UI_PACKAGES and not node.level:
            found.append((node.lineno, (node.module or "").split(".")[0]))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name == "print" or name in ("click.echo", "click.secho") \
                    or name in ("sys.stdout.write", "sys.stderr.write"):
                found.append((node.lineno, name))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def test_no_display_outside_commands():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(DISPLAY_HOME + "/"):
            continue
        allowed = ALLOWED.get(relative, set())
        offenders += [f"deploykit/{relative}:{line}: {what}"
                      for line, what in display_uses(path.read_text(encoding="utf-8")) if what not in allowed]
    assert offenders == [], "display belongs in deploykit/commands/ (the library returns data):\n" + \
        "\n".join(offenders)


def test_the_scan_finds_each_kind_of_display():
    """The scan itself: each form it must catch, and a script's __main__ block it must not."""
    source = '''
import rich.progress
from rich.console import Console
import click
import sys

def f():
    print("x")
    click.echo("y")
    sys.stderr.write("z")

if __name__ == "__main__":
    print("allowed in a script")
'''
    assert [what for _, what in display_uses(source)] == ["rich", "rich", "click", "print", "click.echo",
                                                           "sys.stderr.write"]


def test_run_hil_calls_back_with_its_progress_and_prints_nothing(sine_manifest, tmp_path, capfd):
    """The sample bar's data: (done, total) from the first batch to the last, nothing on the terminal."""
    from deploykit.harness.run import run_hil

    calls: list[tuple[int, int]] = []
    run_hil(sine_manifest.path, f"virtual://{sine_manifest.path}?pacing=0", limit=30, warmup=0,
            outdir=tmp_path / "o", float_reference=False, progress=lambda done, total: calls.append((done, total)))
    assert calls[0][0] < 30 and calls[-1] == (30, 30) and {t for _, t in calls} == {30}
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_the_sample_bar_is_off_without_a_terminal_or_with_quiet(monkeypatch):
    from deploykit.commands import display

    with display.sample_progress() as progress:  # pytest's captured stderr is no terminal
        assert progress is None
    monkeypatch.setattr(display, "stderr_is_terminal", lambda: True)
    with display.sample_progress(quiet=True) as progress:
        assert progress is None
    with display.sample_progress() as progress:
        assert callable(progress)
