"""Link efficiency of `deploykit hil run` on the virtual board, beside two line protocols.

Run: python benchmarks/link.py [--seconds S] [--bauds 115200,921600] [--sections table,noise,boards] [MANIFEST ...]
Without manifests the examples (sine, linear, gestures) are trained and converted into a
temp dir first (not timed).

Sections:
  table   the examples' link efficiency beside two line protocols (below).
  noise   a classifier with 256-byte inputs at 115200 baud with per-byte corruption
          p = 0 ... 1e-2 (`--faults corrupt=p`): goodput (samples/s, and its share of
          the clean run's) beside the ideal ARQ's (1 - p)^L, L the mean wire bytes of the
          INPUT frames actually sent (frames shrink on a noisy line), and the target
          0.9 (1 - p)^L.
  boards  for every boards/*.toml profile, the clean-line ceiling its receive window
          and frame overhead allow (frames of the size the window gives, no compute, full
          duplex), the efficiency measured on the same classifier and their ratio.

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
def board_process(manifest_path, baud: int, board: str = "virtual", faults: str | None = None, seed: int = 0):
    """`deploykit virtual-board` in a child process; yield its pty path."""
    extra = ["--faults", faults, "--seed", str(seed)] if faults else []
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "virtual-board", str(manifest_path),
                             "--baud", str(baud), "--board", board, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
        report = run_hil(manifest.path, port, baud=baud, data=data, warmup=WARMUP,
                         outdir=workdir / f"out-{manifest['name']}-{baud}", float_reference=False)
    return {"samples": n, "in": in_b, "out": out_b, **report["throughput"], "faults": report["faults"]}


def _tensor_bytes(specs) -> int:
    return sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in specs)


NOISE = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
NOISE_BAUD = 115200
RUN_BYTES = 7  # a RESULT's timing run: count, cycles and micros varints (typical)


def wide_manifest(root: Path):
    """A small classifier with 256-byte int8 inputs (as in issue 9's measurements), converted."""
    from deploykit.examples._common import save, seeded_keras
    from deploykit.model.convert import convert
    keras = seeded_keras(0)
    x = np.random.default_rng(0).normal(size=(400, 256)).astype(np.float32)
    y = x[:, :4].argmax(axis=1)
    model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(y, 4), epochs=2, verbose=0)
    (root / "wide-trained").mkdir(parents=True, exist_ok=True)
    files = save(root / "wide-trained", "wide", model, x[:200], x[:100], y[:100])
    return convert(files["model"], root / "wide", name="wide", quantize="int8",
                   rep_data=files["rep_data"], test_data=files["test_data"])


def clean_ceiling(max_payload: int, window: int, in_b: int, out_b: int) -> float:
    """The link efficiency (samples/s over baud/10/(in+out)) a clean line allows at most.

    INPUT frames carry the data size the window gives (stream.frame_data_size), RESULTs
    one frame's records; both directions run at once (full duplex); no compute, no
    host latency. With a 256-byte window that is about 0.9 of the wire for inputs.
    """
    from deploykit.link.stream import frame_data_size
    from deploykit.protocol import wire_size
    data = frame_data_size(max_payload, window)
    per_frame = max(1, data // in_b)  # records per INPUT frame (1 when a record spans frames)
    in_wire = in_b * wire_size(4 + data) / data
    out_wire = wire_size(6 + per_frame * out_b + RUN_BYTES) / per_frame
    return (in_b + out_b) / max(in_wire, out_wire)


def stream_figures(manifest, n: int, baud: int, board: str = "virtual", faults: str | None = None,
                   seed: int = 1) -> dict:
    """Stream n records to a virtual board (own process); goodput, frame sizes, exactness."""
    import time

    from deploykit.link.session import DeviceSession
    from deploykit.model.tflm_host import TflmRunner
    from deploykit.protocol import Input
    size = _tensor_bytes(manifest["inputs"])
    x = np.random.default_rng(seed).integers(0, 256, size=(n, size), dtype=np.uint8)
    with (
        board_process(manifest.path, baud, board, faults, seed) as port,
        DeviceSession(port, baud, expected_sha256=manifest.sha256, handshake_retries=30) as dev,
    ):
        list(dev.stream(x[:5]))  # warm up: round trips and inference time measured
        frames, send = [], dev.link.send

        def counting(msg):
            wire = send(msg)
            if isinstance(msg, Input):
                frames.append(wire)
            return wire
        dev.link.send = counting
        start = time.monotonic()
        got = list(dev.stream(x))
        seconds = time.monotonic() - start
        hello, faults_seen = dev.hello, dev.faults.as_dict()
    runner = TflmRunner(manifest.model_bytes())
    wrong = sum(r.outputs != b"".join(runner.invoke_raw([x[r.record].tobytes()])) for r in got)
    return {"rate": len(got) / seconds, "frame": float(np.mean(frames)), "wrong": wrong, "hello": hello,
            "faults": faults_seen, "n": len(got)}


def noise_sweep(manifest) -> None:
    from deploykit.errors import DeviceError
    from deploykit.report.stats import wire_limit
    in_b, out_b = _tensor_bytes(manifest["inputs"]), _tensor_bytes(manifest["outputs"])
    print(f"\nnoise sweep: {manifest['name']} ({in_b} B in, {out_b} B out) at {NOISE_BAUD} baud, "
          "--faults corrupt=p (per byte, each direction)")
    print(f"{'p':>8}{'samples':>9}{'samples/s':>11}{'efficiency':>11}{'of clean':>10}{'L':>6}"
          f"{'(1-p)^L':>9}{'target':>8}  ok  faults")
    clean = None
    for p in NOISE:
        n = 300 if p <= 1e-3 else 60  # enough for figures within ~2 % at p <= 1e-3
        try:
            r = stream_figures(manifest, n, NOISE_BAUD, faults=f"corrupt={p}" if p else None)
        except DeviceError as exc:  # a noisy line should never end a run: show it when it does
            print(f"{p:>8g}  FAILED: {str(exc)[:160]}", flush=True)
            continue
        clean = clean or r["rate"]
        share, ideal = r["rate"] / clean, (1 - p) ** r["frame"]
        ok = "yes" if share >= 0.9 * ideal else "NO"
        lost = {k: v for k, v in r["faults"].items() if v}
        print(f"{p:>8g}{r['n']:>9}{r['rate']:>11.1f}{r['rate'] / wire_limit(NOISE_BAUD, in_b, out_b):>11.3f}"
              f"{share:>10.3f}{r['frame']:>6.0f}{ideal:>9.3f}{0.9 * ideal:>8.3f}  {ok:<3} {lost}"
              + (f"  {r['wrong']} WRONG" if r["wrong"] else ""), flush=True)


def board_ceilings(manifest) -> None:
    from deploykit.firmware.boards import all_boards
    from deploykit.report.stats import wire_limit
    in_b, out_b = _tensor_bytes(manifest["inputs"]), _tensor_bytes(manifest["outputs"])
    print(f"\nclean-line ceiling per board: {manifest['name']} ({in_b} B in, {out_b} B out) at {NOISE_BAUD} baud")
    print(f"{'board':<22}{'window':>7}{'payload':>8}{'frame':>6}{'ceiling':>9}{'measured':>10}{'ratio':>7}  ok")
    for board in all_boards():
        r = stream_figures(manifest, 200, NOISE_BAUD, board=board.id)
        hello = r["hello"]
        ceiling = clean_ceiling(hello.max_payload, hello.rx_window, in_b, out_b)
        eff = r["rate"] / wire_limit(NOISE_BAUD, in_b, out_b)
        print(f"{board.id:<22}{hello.rx_window:>7}{hello.max_payload:>8}{r['frame']:>6.0f}{ceiling:>9.3f}"
              f"{eff:>10.3f}{eff / ceiling:>7.3f}  {'yes' if eff >= 0.97 * ceiling else 'NO'}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*")
    parser.add_argument("--seconds", type=float, default=5.0, help="data per run, in wire-limit seconds")
    parser.add_argument("--bauds", default="115200,921600")
    parser.add_argument("--in-process", action="store_true", help="serve the virtual board in a thread")
    parser.add_argument("--sections", default="table,noise,boards", help="which tables to print")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory(prefix="dk-link-") as tmp:
        tmp = Path(tmp)
        if "table" in sections:
            examples_table(args, tmp)
        if sections & {"noise", "boards"}:
            wide = wide_manifest(tmp)
            if "noise" in sections:
                noise_sweep(wide)
            if "boards" in sections:
                board_ceilings(wide)


def examples_table(args, tmp: Path) -> None:
    from deploykit.model import manifest as manifest_mod
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
