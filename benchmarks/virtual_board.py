"""Inferences per second of the virtual board with pacing off, for the three examples.

Run: python benchmarks/virtual_board.py [--samples N] [MANIFEST ...]
Without manifests the examples (sine, linear, gestures) are trained and converted into a
temp dir first (not timed). Pacing off means no UART throttling and no simulated
inference time, so the figures are the host's cost of:
  tflm      TFLM's Python interpreter alone (invoke_raw per record)
  engine    + the device side of the protocol (framing, ACK/RESULT) driven in-process
  pty       + a pty, DeviceSession's go-back-N streaming and the select loop: the full path
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _examples import example_manifests  # noqa: E402  (a sibling script module)


def records_for(manifest, n: int) -> list[bytes]:
    from deploykit.harness.inputs import load_inputs
    inputs = load_inputs(manifest, None, None)
    idx = np.arange(n) % len(inputs)
    return [bytes(r) for r in inputs.records(idx)]


def rate_tflm(manifest, records) -> float:
    from deploykit.model.tflm_host import TflmRunner
    runner = TflmRunner(manifest.model_bytes())
    start = time.perf_counter()
    for rec in records:
        runner.invoke_raw([rec])
    return len(records) / (time.perf_counter() - start)


def rate_engine(manifest, records) -> float:
    """Stream records through PacedLink.step with frames of max_payload, as a host would."""
    from deploykit.protocol import Begin, Input, encode_message
    from deploykit.protocol.messages import ResultBatch
    from deploykit.virtual_board import make_link
    from deploykit.virtual_board.rawclient import RawClient
    link = make_link(manifest, pacing=False)
    client = RawClient(None)
    client.feed(link.step(0.0))
    hello = link.engine.fw.hello
    client.hello = hello
    stream = b"".join(records)
    chunk = (hello.max_payload - 4) // hello.input_record_bytes * hello.input_record_bytes or hello.max_payload - 4
    done = 0
    start = time.perf_counter()
    link.host_write(encode_message(Begin(0), 0), 0.0)
    for seq, off in enumerate(range(0, len(stream), chunk), 1):
        link.host_write(encode_message(Input(off, stream[off:off + chunk]), seq), 0.0)
        done += sum(len(m.outputs) for m in client.feed(link.step(0.0)) if isinstance(m, ResultBatch))
    elapsed = time.perf_counter() - start
    assert done == len(records), (done, len(records))
    return len(records) / elapsed


def rate_pty(manifest, records) -> float:
    from deploykit.harness import DeviceSession
    from deploykit.virtual_board import VirtualBoard
    with VirtualBoard(manifest, pacing=False) as port, \
            DeviceSession(port, 115200, expected_sha256=manifest.sha256) as dev:
        start = time.perf_counter()
        results = dev.infer(records)
        elapsed = time.perf_counter() - start
    assert len(results) == len(records)
    return len(records) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*")
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    from deploykit.model.manifest import load
    with tempfile.TemporaryDirectory() as tmp:
        manifests = [load(m) for m in args.manifests] or example_manifests(Path(tmp))
        print(f"virtual board, pacing off, {args.samples} records each (inferences per second)")
        print(f"{'model':<10} {'in B':>5} {'tflm':>9} {'engine':>9} {'pty':>9}")
        for m in manifests:
            records = records_for(m, args.samples)
            figures = [rate_tflm(m, records), rate_engine(m, records), rate_pty(m, records)]
            print(f"{m['name']:<10} {len(records[0]):>5} " + " ".join(f"{f:9.0f}" for f in figures))


if __name__ == "__main__":
    main()
