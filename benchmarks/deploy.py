"""Wall time of each stage of `deploy --board virtual` on the sine example, and of `demo`.

Run: python benchmarks/deploy.py
Prints one line per stage (seconds). The demo is run as a fresh process from a clean
output directory, as a new user would run it after installation (TensorFlow import and
training included).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def deploy_stages(root: Path) -> None:
    from deploykit.deploy import StageTimer, deploy
    from deploykit.examples import train_example

    start = time.perf_counter()
    files = train_example("sine", root / "example", seed=0)
    print(f"sine example training (not a deploy stage)   {time.perf_counter() - start:7.2f} s")
    timer = StageTimer()
    start = time.perf_counter()
    result = deploy(files["model"], root / "out", board="virtual", profile="nano33ble_sense",
                    data=files["test_data"], rep_data=files["rep_data"], name="sine", stages=timer)
    total = time.perf_counter() - start
    print(f"deploy --board virtual, sine ({result.report.get('samples', '?')} samples):")
    for stage, seconds in timer.timings.items():
        print(f"  {stage:<8} {seconds if isinstance(seconds, str) else f'{seconds:7.2f} s'}")
    print(f"  total    {total:7.2f} s")


def demo_from_clean(root: Path) -> None:
    out = root / "demo"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deploykit", "demo", "-o", str(out), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    total = time.perf_counter() - start
    timings = json.loads((out / "deploy.json").read_text())["timings_s"]
    print("deploykit demo from a clean output directory (fresh process):")
    for stage, seconds in timings.items():
        print(f"  {stage:<8} {seconds if isinstance(seconds, str) else f'{seconds:7.2f} s'}")
    print(f"  total    {total:7.2f} s (wall, including interpreter start and imports; goal < 60 s)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        deploy_stages(Path(tmp))
        demo_from_clean(Path(tmp))
