"""Link efficiency of `deploykit hil run` on the virtual board, beside two line protocols.

Run: python benchmarks/link.py [--seconds S] [--bauds 115200,921600] [MANIFEST ...]
Without manifests the examples (sine, linear, gestures) are trained and converted into a
temp dir first (not timed).

link_efficiency = samples/s measured by run_hil (report.json throughput) over the wire
limit baud/10/(in_bytes + out_bytes): the payload alone, no framing, no ACKs, no compute.
That limit counts input and output bytes one after the other, but the UART is full duplex,
so a protocol that overlaps inputs with results (this one) can exceed 1 (sine does).
The virtual board paces its UART at the given baud and holds results back by its cost
model's inference time, so the figure includes compute as a board would. It runs as
`deploykit virtual-board` in its own process, as a board is its own device (with
--in-process it shares the harness's interpreter, and the GIL, in a thread).

Beside it, the efficiency *ceilings* of two line protocols for the same tensors,
computed from their bytes (zero compute, zero host latency; both are stop-and-wait, so
every byte of a request and its reply is serialized on the line):
  b64+ack  TFLM's test_over_serial (tflite-micro-arduino-examples): "!DATA raw-int8 N",
           base64 lines of at most 48 bytes (kSerialMaxInputLength 64), each answered by
           "!DATA_ACK n" before the next; "!OK DATA ..." at the end; outputs assumed back
           as one base64 line.
  hex      the MLPerf Tiny runner (mlcommons/tiny benchmark/runner device_under_test.py):
           "db load N%", then "db <hex>%" commands of 31 bytes each answered by "m-ready",
           then "infer 1 0%" answered by start/done lines and "m-results-[f,...]" with
           one "0.000"-style float per output element.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _examples import example_manifests  # noqa: E402  (a sibling script module)

FULL_DUPLEX_NOTE = ("efficiency > 1 is no error: the wire limit counts input and output bytes one after the "
                    "other, but the UART is full duplex and inputs overlap results")
WARMUP = 20


def b64_ack_ceiling(in_bytes: int, out_bytes: int, line: int = 48) -> float:
    """Payload share of the bytes test_over_serial puts on the line for one sample."""
    lines = [min(line, in_bytes - i) for i in range(0, in_bytes, line)]
    wire = len(f"!DATA raw-int8 {in_bytes}\n") + len(f"!OK DATA raw-int8 {in_bytes}\n")
    wire += sum(4 * math.ceil(n / 3) + 1 + len(f"!DATA_ACK {n}\n") for n in lines)
    wire += 4 * math.ceil(out_bytes / 3) + 1
    return (in_bytes + out_bytes) / wire


def hex_ceiling(in_bytes: int, out_elems: int, out_bytes: int, chunk: int = 31) -> float:
    """Payload share of the bytes the MLPerf Tiny runner's exchange puts on the line."""
    ready = len("m-ready\r\n")
    wire = len(f"db load {in_bytes}%") + len(f"m-[Expecting {in_bytes} bytes]\r\n") + ready
    for i in range(0, in_bytes, chunk):
        wire += len("db %") + 2 * min(chunk, in_bytes - i) + ready
    results = "m-results-[" + ",".join(["0.000"] * out_elems) + "]\r\n"
    wire += len("infer 1 0%") + len("m-infer-start-1\r\nm-infer-done\r\n") + len(results) + ready
    return (in_bytes + out_bytes) / wire


@contextlib.contextmanager
def board_process(manifest_path, baud: int):
    """`deploykit virtual-board` in a child process; yield its pty path."""
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "virtual-board", str(manifest_path),
                             "--baud", str(baud)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def measure(manifest, baud: int, seconds: float, workdir: Path, in_process: bool = False) -> dict:
    """run_hil on a virtual board at `baud` with about `seconds` of data; report figures."""
    from deploykit.harness.inputs import load_inputs
    from deploykit.harness.run import run_hil
    from deploykit.report.stats import wire_limit
    from deploykit.virtual_board import VirtualBoard
    base = load_inputs(manifest)
    in_b, out_b = _tensor_bytes(manifest["inputs"]), _tensor_bytes(manifest["outputs"])
    n = max(200, int(wire_limit(baud, in_b, out_b) * seconds))
    data = workdir / f"{manifest['name']}-{baud}.npz"
    np.savez(data, x=base.x_model[np.arange(n) % len(base)])
    with (VirtualBoard(manifest.path, baud=baud, pacing=True) if in_process
          else board_process(manifest.path, baud)) as port:
        report = run_hil(manifest.path, port, baud=baud, data=data, warmup=WARMUP, quiet=True,
                         outdir=workdir / f"out-{manifest['name']}-{baud}", float_reference=False)
    return {"samples": n, "in": in_b, "out": out_b, **report["throughput"], "faults": report["faults"]}


def _tensor_bytes(specs) -> int:
    return sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in specs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*")
    parser.add_argument("--seconds", type=float, default=5.0, help="data per run, in wire-limit seconds")
    parser.add_argument("--bauds", default="115200,921600")
    parser.add_argument("--in-process", action="store_true", help="serve the virtual board in a thread")
    args = parser.parse_args(argv)
    from deploykit.model import manifest as manifest_mod
    with tempfile.TemporaryDirectory(prefix="dk-link-") as tmp:
        tmp = Path(tmp)
        manifests = [manifest_mod.load(m) for m in args.manifests] or example_manifests(tmp)
        header = f"{'example':<10}{'in B':>6}{'out B':>6}{'baud':>8}{'samples':>9}{'samples/s':>11}" \
                 f"{'limit/s':>10}{'efficiency':>11}{'b64+ack':>9}{'hex':>7}  faults"
        print(header)
        for m in manifests:
            out_elems = int(np.prod(m["outputs"][0]["shape"]))
            for baud in (int(b) for b in args.bauds.split(",")):
                r = measure(m, baud, args.seconds, tmp, args.in_process)
                faults = sum(r["faults"].values())
                print(f"{m['name']:<10}{r['in']:>6}{r['out']:>6}{baud:>8}{r['samples']:>9}"
                      f"{r['samples_per_s']:>11.0f}{r['wire_limit_samples_per_s']:>10.0f}"
                      f"{r['link_efficiency']:>11.3f}{b64_ack_ceiling(r['in'], r['out']):>9.3f}"
                      f"{hex_ceiling(r['in'], out_elems, r['out']):>7.3f}  {faults}", flush=True)
        print(FULL_DUPLEX_NOTE)


if __name__ == "__main__":
    main()
