"""What the virtual board is "flashed" with: the model in TFLM, its HELLO, its cost.

The model runs in the TFLM interpreter of the `tflite-micro` package (real reference
kernels) through deploykit.model.tflm_host.TflmRunner. The arena HELLO reports is the
manifest's 32-bit projection of TFLM's recording-allocator figure for the board's
arena class (arena_used); arena_configured is that plus a 10 % margin rounded up to 16
bytes, as the renderer sizes a board's arena, unless given. A LOG frame after every
boot says so, since a host figure stands in for a measured one. An arena configured
smaller than that fails as the rendered firmware's AllocateTensors does: HELLO says
arena_used 0 and every record gets ERROR INVOKE_FAILED. Its HELLO firmware id hashes the
manifest file, the board file and the deploykit version (deploykit.firmware.build_id).
Its latency is the per-operator cost model's (cost.py), the same for every record.
It refuses (BadInput) a model the board's firmware could not carry (deploykit.firmware.fit),
so a virtual run never passes what no build for that board can run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from deploykit.errors import DeviceError
from deploykit.model.arena import with_margin
from deploykit.protocol import Capability, Hello, TensorSpec, TimerKind
from deploykit.protocol.framing import max_payload_for_window
from deploykit.virtual_board.cost import InferenceCost, inference_timing

_INVOKE_LOCK = threading.Lock()  # boards served in threads invoke TFLM one at a time (its
                                 # Python runtime does not say it is thread-safe)
MAX_PAYLOAD_CAP = 65535   # a u16 in HELLO


class _Runner(Protocol):
    """What Firmware needs of a model runner (a TFLM interpreter wrapper)."""

    def invoke_raw(self, inputs: list[bytes]) -> list[bytes]: ...


@dataclass
class Firmware:
    hello: Hello
    runner: _Runner
    timing: InferenceCost
    banner: bytes
    arena_note: str
    diagnostics: object = None  # virtual_board.diagnostics.VirtualDiagnostics (OP_TIMING, TENSOR_DUMP)

    def __post_init__(self):
        # computed once: they are read for every record
        self.in_record = self.hello.input_record_bytes
        self.out_record = self.hello.output_record_bytes
        self._input_sizes = [s.nbytes for s in self.hello.inputs]

    def split(self, record: bytes) -> list[bytes]:
        """A record's input tensors."""
        parts, off = [], 0
        for size in self._input_sizes:
            parts.append(bytes(record[off:off + size]))
            off += size
        return parts

    def infer(self, record: bytes) -> bytes:
        """One inference on one record (input tensors back to back); outputs back to back."""
        parts = self.split(record)
        with _INVOKE_LOCK:
            return b"".join(self.runner.invoke_raw(parts))


def arena_figures(manifest, board, configured: int | None = None) -> tuple[int, int, str]:
    """(arena_configured, arena_used, note) for HELLO, from the manifest's projection."""
    arena = manifest["arena"]
    used = manifest.arena_projection(board.arena_class, board.id)
    configured = int(configured) if configured else with_margin(used)
    if configured < used:
        return configured, 0, f"AllocateTensors failed with a {configured}-byte arena (simulated: it needs {used} B)"
    note = (f"simulated: arena_used {used} B is the {board.arena_class} 32-bit projection of "
            f"TFLM's recording allocator (host recorded {arena.get('host_recorded', '?')} B); "
            f"arena_configured {configured} B")
    return configured, used, note


def firmware_id(manifest, board) -> bytes:
    """The virtual board's build id: its manifest file, its board file (and cost file), the
    deploykit version: a resumed run continues only on a board priced the same way."""
    from pathlib import Path

    from deploykit import __version__
    from deploykit.firmware.build_id import virtual_id
    board_bytes = board.path.read_bytes()
    if getattr(board, "cost_path", ""):  # calibrated costs are part of what the board "runs"
        board_bytes += Path(board.cost_path).read_bytes()
    return virtual_id(manifest.path.read_bytes(), board_bytes, __version__)


def make_hello(manifest, board, configured: int, used: int) -> Hello:
    window = int(board.rx_buffer_bytes)
    return Hello(
        board_id=board.id, model_sha256=bytes.fromhex(manifest.sha256),
        cpu_hz=int(board.clock_mhz) * 1_000_000, timer=TimerKind[board.timer_kind],
        arena_configured=configured, arena_used=used, max_payload=max_payload_for_window(window, MAX_PAYLOAD_CAP),
        rx_window=window, inputs=tuple(TensorSpec.from_manifest(s) for s in manifest["inputs"]),
        outputs=tuple(TensorSpec.from_manifest(s) for s in manifest["outputs"]), simulated=True,
        firmware_id=firmware_id(manifest, board),
        capabilities=int(Capability.OP_TIMING | Capability.TENSOR_DUMP | Capability.TIMED_LOOP
                         | Capability.SELECTIVE_ACK))


def build_firmware(manifest, board, arena_configured: int | None = None, runner=None) -> Firmware:
    """Load the manifest's model into TFLM and describe it as the board would."""
    configured, used, note = arena_figures(manifest, board, arena_configured)
    from deploykit.firmware import fit  # the board's limits, as render and deploy check them
    fit.check(manifest, board, manifest.model_bytes(), configured)
    hello = make_hello(manifest, board, configured, used)
    if used == 0:
        runner = _NoInterpreter(note)
    elif runner is None:
        runner = _runner(manifest.model_path)
    banner = (f"\r\ndeploykit virtual board ({board.id}, simulated)\r\n"
              f"model {manifest.sha256[:16]} arena {used}/{configured} B\r\n").encode("ascii", "replace")
    from deploykit.virtual_board.diagnostics import VirtualDiagnostics
    diagnostics = VirtualDiagnostics(manifest.model_path, board, hello.timer == TimerKind.micros) if used else None
    return Firmware(hello, runner, inference_timing(_model(manifest.model_path), board),
                    banner, note, diagnostics)


class _NoInterpreter:
    """The firmware after a failed AllocateTensors: RunnerInfer fails for every record."""

    def __init__(self, why: str):
        self.why = why

    def invoke_raw(self, inputs):
        raise DeviceError(self.why)


def _model(model_path):
    """The parsed model the cost model reads (every subgraph, per-operator shapes).

    Not cached: each board has its own (parsing and loading a runner take ~20 ms, measured
    on the sine and gestures examples, against ~3 ms from a cache)."""
    from deploykit.model.tflite_model import parse
    with open(model_path, "rb") as fh:
        return parse(fh.read(), model_path)


def _runner(model_path):
    """This board's own TFLM interpreter (boards share nothing)."""
    from deploykit.model.tflm_host import TflmRunner
    with open(model_path, "rb") as fh:
        return TflmRunner(fh.read())
