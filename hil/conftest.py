"""The HIL suite's configuration: the deploykit pytest plugin, and a default model.

Run it against a board:     python -m pytest hil --manifest build/sine/manifest.json --port /dev/ttyACM0
On the virtual board (CI):  python -m pytest hil [--manifest ...]
Without --manifest the sine example is trained and converted into a temp dir first
(a few seconds), so `python -m pytest hil` works on a fresh checkout.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

if not any(ep.value == "deploykit.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["deploykit.pytest_plugin"]   # a checkout without `pip install -e .`


@pytest.fixture(scope="session")
def dk_manifest(request, tmp_path_factory):
    """--manifest, or the sine example converted for this run."""
    from deploykit.model.manifest import load
    given = getattr(request, "param", None) or request.config.getoption("dk_manifest")
    if given:
        return load(given)
    if request.config.getoption("dk_port"):
        pytest.fail("--port needs --manifest: the manifest.json of the model flashed on that board",
                    pytrace=False)
    from deploykit.model.convert import convert
    from deploykit.examples import train_example
    root = tmp_path_factory.mktemp("hil-sine")
    files = train_example("sine", root / "trained", seed=0, epochs=8)
    return convert(files["model"], root / "sine", name="sine", quantize="int8",
                   rep_data=files["rep_data"], test_data=files["test_data"])
