"""The HIL suite's configuration: the deploykit pytest plugin, this suite's knobs, a default model.

Run it against a board:     python -m pytest hil --dk-manifest build/sine/manifest.json --dk-port /dev/ttyACM0
On the virtual board (CI):  python -m pytest hil --dk-manifest build/sine/manifest.json
Without --dk-manifest the model of `deploykit demo` (./deploykit-demo/model/) is tested if
it is there; otherwise the run stops with one line saying how to make a model.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

if not any(ep.value == "deploykit.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["deploykit.pytest_plugin"]   # a checkout without `pip install -e .`

DEMO_MANIFEST = Path("deploykit-demo") / "model" / "manifest.json"   # `deploykit demo`'s default output
HOW_TO_GET_A_MODEL = ("no model to test: pass --dk-manifest build/m/manifest.json (from `deploykit convert`), "
                      "or run `deploykit demo` here first to make ./deploykit-demo/")


def pytest_addoption(parser):
    """The suite's own knobs (the plugin keeps only what any HIL test needs)."""
    group = parser.getgroup("deploykit")
    group.addoption("--hil-samples", dest="hil_samples", default=50, type=int, metavar="N",
                    help="test samples the hil/ suite streams (default 50)")
    group.addoption("--dk-max-latency-us", dest="hil_max_latency_us", default=None, type=float, metavar="US",
                    help="hil/ latency budget in µs, as `deploykit hil run --max-latency-us` "
                         "(default: twice the board's cost-model estimate)")
    group.addoption("--hil-output-tolerance", dest="hil_tolerance", default=1, type=int, metavar="LSB",
                    help="hil/: allowed difference from TFLM on the host, in output quantization steps")


def default_manifest(config) -> Path | None:
    """--dk-manifest, else (on the virtual board only) the demo's model in the current folder, else None."""
    given = config.getoption("dk_manifest")
    if given:
        return Path(given)
    if config.getoption("dk_port") or config.getoption("dk_place"):
        return None     # a real board runs what was flashed on it: its manifest must be named
    return DEMO_MANIFEST if DEMO_MANIFEST.is_file() else None


def pytest_collection_modifyitems(config, items):
    """Refuse up front, in one line, a run of this suite with nothing to test (not one error per test)."""
    here = Path(__file__).parent
    if config.option.collectonly or default_manifest(config) is not None:
        return
    if not any(here in Path(item.path).parents for item in items):
        return
    for flag in ("dk_port", "dk_place"):
        if config.getoption(flag):
            raise pytest.UsageError(f"--{flag.replace('_', '-')} needs --dk-manifest: "
                                    "the manifest.json of the model flashed on that board")
    raise pytest.UsageError(HOW_TO_GET_A_MODEL)


@pytest.fixture(scope="session")
def dk_manifest(request):
    """--dk-manifest (or an indirect parameter), or the demo's model."""
    from deploykit.model.manifest import load
    given = getattr(request, "param", None) or default_manifest(request.config)
    if not given:
        pytest.fail(HOW_TO_GET_A_MODEL, pytrace=False)
    return load(given)
