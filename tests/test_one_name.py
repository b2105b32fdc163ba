"""Issue 10: one name per thing. No two classes in the package share a name."""
import ast
import collections
import pathlib

import deploykit

PACKAGE = pathlib.Path(deploykit.__file__).parent


def test_no_two_classes_share_a_name():
    homes = collections.defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                homes[node.name].append(str(path.relative_to(PACKAGE)))
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice, f"classes defined in more than one place: {twice}"
