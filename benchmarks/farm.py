"""Farm throughput: one test set over 1, 2, 4 and 8 boards, as `deploykit farm run` shards it.

Run: python benchmarks/farm.py [--boards 1,2,4,8] [--per-board 120] [--via rfc2217|pty] [MANIFEST]

The boards are paced virtual boards standing in for an esp32dev (a UART board) at
115200 baud, each `deploykit virtual-board` in its own process; with --via rfc2217 (the
default) each sits behind its own ser2net on 127.0.0.1, as a labgrid exporter serves it,
and the farm opens rfc2217:// URLs. Inputs are at least 256 bytes, so the wire and not
this machine is the limit: without MANIFEST a small synthetic int8 model with a 288-byte
input (32 x 9) is built and converted first (not timed). Each count runs `per-board x
boards` samples through run_farm (no float reference); samples/s is the report's
throughput (wall time from opening the places to the last row, warm-up included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BOARD, BAUD = "esp32dev", 115200


def synthetic_manifest(root: Path):
    """A 288-byte-input int8 model (32 x 9 -> 16 -> 4), converted by deploykit (not timed)."""
    from deploykit.model import tf_backend
    from deploykit.model.convert import convert
    tf = tf_backend.tf()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32, 9)).astype(np.float32)
    y = rng.integers(0, 4, size=2000)
    model = tf.keras.Sequential([tf.keras.Input((32, 9)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(root / "wide.keras")
    np.savez(root / "rep.npz", x=x[:200])
    np.savez(root / "test.npz", x=x, y=y)
    return convert(root / "wide.keras", root / "wide", name="wide", quantize="int8",
                   rep_data=root / "rep.npz", test_data=root / "test.npz")


def start_boards(host, manifest, count: int, via: str) -> list[str]:
    """`count` paced esp32dev stand-ins; their URLs (rfc2217 through ser2net, or the ptys)."""
    if via == "rfc2217":
        return [f"rfc2217://127.0.0.1:{p}" for p in host.add_boards(manifest, count, BOARD, baud=BAUD)]
    import subprocess

    from deploykit.virtual_board.lab import _env
    urls = []
    for i in range(count):
        link = host.dir / f"pty{i}"
        proc = host.spawn([sys.executable, "-m", "deploykit", "virtual-board", str(manifest.path), "--board", BOARD,
                           "--baud", str(BAUD), "--link", str(link)], stdout=subprocess.PIPE, env=_env())
        proc.stdout.readline()
        urls.append(str(link))
    return urls


def measure(manifest, urls: list[str], samples: int, outdir: Path) -> dict:
    from deploykit.harness.farm import Place, run_farm
    places = [Place(f"b{i}", url, BOARD) for i, url in enumerate(urls)]
    report = run_farm(manifest.path, places, limit=samples, outdir=outdir, float_reference=False, resume=False)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", help="manifest.json (default: a synthetic 288-byte-input model)")
    parser.add_argument("--boards", default="1,2,4,8")
    parser.add_argument("--per-board", type=int, default=120, help="samples per board in each run")
    parser.add_argument("--via", choices=("rfc2217", "pty"), default="rfc2217")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.boards.split(",")]
    from deploykit.model.manifest import load
    from deploykit.virtual_board.lab import Host
    with tempfile.TemporaryDirectory(prefix="dk-farm-bench-") as tmp:
        root = Path(tmp)
        manifest = load(Path(args.manifest)) if args.manifest else synthetic_manifest(root)
        in_bytes = int(np.prod(manifest["inputs"][0]["shape"][1:]))
        with Host("bench", root / "host") as host:
            urls = start_boards(host, manifest, max(counts), args.via)
            print(f"model {manifest['name']}: {in_bytes}-byte int8 inputs; "
                  f"{BOARD} stand-ins at {BAUD} baud via {args.via}")
            print(f"{'boards':>6} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'speedup':>8} "
                  f"{'per board':>10} {'wire limit/board':>17}")
            base = None
            for n in counts:
                t = time.monotonic()
                report = measure(manifest, urls[:n], n * args.per_board, root / f"run{n}")
                thr = report["throughput"]
                rate = thr["samples_per_s"]
                base = base or rate / n
                assert report["samples"] == n * args.per_board, report["samples"]
                print(f"{n:>6} {report['samples']:>8} {thr['seconds']:>8.2f} {rate:>10.1f} {rate / base:>8.2f} "
                      f"{rate / n:>10.1f} {thr['wire_limit_samples_per_s']:>17.1f}   "
                      f"(wall {time.monotonic() - t:.1f} s)")


if __name__ == "__main__":
    main()
