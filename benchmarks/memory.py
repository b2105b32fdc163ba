"""Peak resident memory of a HIL run against the number of samples (sine model).

Run: python benchmarks/memory.py [--manifest M] [--device N ...] [--synthetic N ...]

Each figure is one child process (so one run's memory never hides another's); the child
prints its own peak RSS (getrusage ru_maxrss). Two kinds of run:

  device     `run_hil` on the in-process virtual board with pacing off: N samples streamed
             through the device, written to results.jsonl and reported (float reference off,
             so TensorFlow is never loaded and the figure is the harness's own).
  synthetic  the results/report path alone: a 1-sample device run writes the header, then
             N-1 synthetic rows (random outputs and timings) are appended, and `run_hil`
             resumes the file (nothing left to stream) and builds every report from it.
             For N too large to stream through the Python virtual board in minutes.

Without --manifest the sine example is trained and converted into a temp dir first.
The goal (issue 9): peak at 10^6 samples within 50 MB of the peak at 10^4.

Measured on the 2-core dev machine (Python 3.11), peak RSS in MB:

                      10^4    10^5    10^6
  device, before      99.8   167.7   854.7   (every row kept: ~0.8 KB per sample)
  device, now         96.2       -   106.8   (+10.6 MB at 10^6)
  synthetic, before  103.8   205.4  1231.2
  synthetic, now      95.9       -   106.9   (+11.0 MB at 10^6)

What still grows is per sample and compact: the data and the reference predictions
(a few bytes per sample for sine), one done-flag per sample, the streamer's per-record
timestamps, and the latency columns the exact percentiles need (16 bytes per sample).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOAL_MB = 50
sys.path.insert(0, str(HERE.parent))


def _data(path: Path, n: int) -> Path:
    x = np.linspace(0.0, 2 * np.pi, n, dtype=np.float32).reshape(-1, 1)
    np.savez(path, x=x, y=np.sin(x))
    return path


def _run(manifest: str, data: Path, outdir: Path, limit: int | None = None) -> dict:
    from deploykit.harness.run import run_hil
    return run_hil(manifest, f"virtual://{manifest}?pacing=0", data=data, limit=limit, warmup=0,
                   outdir=outdir, float_reference=False)


def _append_synthetic(results: Path, n: int) -> None:
    """Rows 1..n-1 after the header and row 0 a real run wrote, streamed (never held)."""
    rng = random.Random(0)
    with open(results, "a", encoding="utf-8") as fh:
        for i in range(1, n):
            us = 4000 + rng.randrange(900)
            fh.write(json.dumps({"index": i, "outputs": [[rng.randrange(-128, 128)]], "cycles": us * 64,
                                 "us": us, "round_trip_us": round(us + rng.random() * 300, 1)},
                                separators=(",", ":")) + "\n")


def child(kind: str, n: int, manifest: str, work: Path) -> None:
    """One measurement; prints {"kind", "samples", "peak_rss_mb", "seconds"} as JSON."""
    work.mkdir(parents=True, exist_ok=True)
    data = _data(work / "data.npz", n)
    start = time.monotonic()
    report = _run(manifest, data, work / "out")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"kind": kind, "samples": report["samples"], "peak_rss_mb": round(peak, 1),
                      "seconds": round(time.monotonic() - start, 1)}))


def prepare_synthetic(n: int, manifest: str, work: Path) -> None:
    """Header + row 0 from a real 1-sample run (same data, so the same data hash), then rows."""
    work.mkdir(parents=True, exist_ok=True)
    _run(manifest, _data(work / "data.npz", n), work / "out", limit=1)
    _append_synthetic(work / "out" / "results.jsonl", n)


def _spawn(*args) -> str:
    cmd = [sys.executable, __file__, *map(str, args)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=_env()).stdout
    return out.strip().splitlines()[-1] if out.strip() else ""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    return env


def _manifest(given: str | None, root: Path) -> str:
    if given:
        return given
    from deploykit.examples import train_example
    from deploykit.model.convert import convert
    files = train_example("sine", root / "trained", seed=0, quick=True)
    return str(convert(files["model"], root / "sine", name="sine", quantize="int8",
                       rep_data=files["rep_data"], test_data=files["test_data"]).path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", help="a converted sine manifest.json (default: train one)")
    p.add_argument("--device", type=int, nargs="*", default=[10_000, 1_000_000],
                   help="sample counts through the device (10^6 takes about 90 s)")
    p.add_argument("--synthetic", type=int, nargs="*", default=[10_000, 1_000_000],
                   help="sample counts through the results/report path")
    p.add_argument("--child", nargs=4, metavar=("KIND", "N", "MANIFEST", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, n, manifest, work = args.child
        if kind == "prepare":
            prepare_synthetic(int(n), manifest, Path(work))
        else:
            child(kind, int(n), manifest, Path(work))
        return
    with tempfile.TemporaryDirectory(prefix="dk-memory-") as tmp:
        root = Path(tmp)
        manifest = _manifest(args.manifest, root)
        print(f"{'run':<10} {'samples':>9} {'peak RSS MB':>12} {'seconds':>8}")
        for kind, counts in (("device", args.device), ("synthetic", args.synthetic)):
            peaks = {}
            for n in counts:
                work = root / f"{kind}-{n}"
                if kind == "synthetic":
                    _spawn("--child", "prepare", n, manifest, work)
                fig = json.loads(_spawn("--child", kind, n, manifest, work))
                peaks[n] = fig["peak_rss_mb"]
                print(f"{kind:<10} {fig['samples']:>9} {fig['peak_rss_mb']:>12.1f} {fig['seconds']:>8.1f}",
                      flush=True)
            if len(peaks) > 1:
                lo, hi = min(peaks), max(peaks)
                grow = peaks[hi] - peaks[lo]
                print(f"{kind:<10} peak at {hi} is {grow:+.1f} MB from {lo} ({grow * 1024 * 1024 / (hi - lo):.1f} "
                      f"bytes/sample; goal: within {GOAL_MB} MB)", flush=True)


if __name__ == "__main__":
    main()
