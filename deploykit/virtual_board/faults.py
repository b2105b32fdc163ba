"""Fault injection for the virtual board: one spec, parsed the same for CLI and URL.

Spec: comma-separated `key=value` items, e.g.
`drop=0.005,corrupt=0.005,dup=0.01,garbage=0.01,stall=40:2.5,reset=50,disconnect=120`.

- drop, corrupt: probability per byte on the wire, each direction (a corrupted byte is
  XORed with a random non-zero value). Per byte, not per frame: a frame of L bytes is
  damaged with probability 1 - (1 - p)^L, so drop=0.005 loses ~47% of 128-byte frames.
- dup: probability per device frame that it goes out twice.
- garbage: probability per device frame that stray text (a debug print) precedes it.
- stall=K:SECONDS: the device hangs for SECONDS before running record K (once).
- reset=K: the device reboots when it is about to run record K (once per item).
- disconnect=K: the port vanishes at record K and comes back as a new port behind the
  same stable path, the board rebooted (once per item).
- perturb_op=INDEX: operator INDEX's outputs are off by a few steps in every tensor dump
  (TENSOR_DUMP_REQ), as a miscompiled kernel would make them; the layer-by-layer
  comparison must name that operator.
reset, disconnect and stall may repeat. Everything is drawn from random generators
seeded with `seed`, one per direction, so a run is reproducible: the harness is never
told, it only sees bytes.

Output faults make a device that is wrong, not slow (the harness must catch it by
comparing results, since every frame is well formed):
- off_by_one: probability per record that one output element is one quantization step
  off (+1, or -1 at the type's maximum; the next float for float outputs).
- stuck: probability per record that the result is the one sent before (an output
  buffer the inference did not overwrite).
They draw from their own generator, so adding them leaves the wire faults of a seed as
they were. tests/cpp/posix_device.cpp takes the same two keys (`--faults`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from deploykit.errors import BadInput

RATE_KEYS = ("drop", "corrupt", "dup", "garbage")
OUTPUT_KEYS = ("off_by_one", "stuck")  # probabilities per record; see OutputFaults
RECORD_KEYS = ("stall", "reset", "disconnect")
PERTURB_KEY = "perturb_op"
PERTURB_STEPS = 3  # quantization steps (int) or units (float) added to a perturbed output
_EXAMPLE = "drop=0.005,corrupt=0.005,dup=0.01,garbage=0.01,stall=40:2.5,reset=50,disconnect=120"


@dataclass(frozen=True)
class FaultSpec:
    drop: float = 0.0
    corrupt: float = 0.0
    dup: float = 0.0
    garbage: float = 0.0
    stalls: tuple[tuple[int, float], ...] = ()
    resets: tuple[int, ...] = ()
    disconnects: tuple[int, ...] = ()
    off_by_one: float = 0.0
    stuck: float = 0.0
    perturb_op: int | None = None
    text: str = field(default="", compare=False)


def _bad(spec: str, why: str) -> BadInput:
    return BadInput(f"fault spec {spec!r}: {why}; write e.g. {_EXAMPLE}")


def _record(spec: str, key: str, value: str) -> int:
    if not value.isdigit():
        raise _bad(spec, f"{key} needs a record number (0 or more), got {value!r}")
    return int(value)


def _rate(spec: str, key: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise _bad(spec, f"{key} needs a probability, got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise _bad(spec, f"{key}={value} is not a probability between 0 and 1")
    return rate


def _stall(spec: str, value: str) -> tuple[int, float]:
    record, sep, seconds = value.partition(":")
    if not sep:
        raise _bad(spec, f"stall needs RECORD:SECONDS, got {value!r}")
    try:
        secs = float(seconds)
    except ValueError:
        raise _bad(spec, f"stall seconds {seconds!r} is not a number") from None
    if not 0.0 < secs <= 3600.0:
        raise _bad(spec, f"stall seconds must be between 0 and 3600, got {seconds}")
    return _record(spec, "stall", record), secs


def parse_faults(spec: str | None) -> FaultSpec:
    """Parse a fault spec; raise BadInput naming the bad item and showing an example."""
    spec = (spec or "").strip()
    rates: dict[str, float] = {}
    stalls, resets, disconnects, perturb = [], [], [], None
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise _bad(spec, f"item {item!r} is not key=value")
        if key in RATE_KEYS or key in OUTPUT_KEYS:
            rates[key] = _rate(spec, key, value)
        elif key == "stall":
            stalls.append(_stall(spec, value))
        elif key == "reset":
            resets.append(_record(spec, key, value))
        elif key == "disconnect":
            disconnects.append(_record(spec, key, value))
        elif key == PERTURB_KEY:
            if not value.isdigit():
                raise _bad(spec, f"{key} needs an operator index (0 or more), got {value!r}")
            perturb = int(value)
        else:
            raise _bad(spec, f"unknown fault {key!r} (known: "
                             f"{', '.join(RATE_KEYS + RECORD_KEYS + OUTPUT_KEYS + (PERTURB_KEY,))})")
    return FaultSpec(**rates, stalls=tuple(stalls), resets=tuple(resets),
                     disconnects=tuple(disconnects), perturb_op=perturb, text=spec)


class FaultInjector:
    """A FaultSpec in action: seeded generators and the record faults not yet fired."""

    def __init__(self, spec: FaultSpec | str | None = None, seed: int = 0):
        self.spec = spec if isinstance(spec, FaultSpec) else parse_faults(spec)
        self._rng = {d: random.Random(f"deploykit-faults-{seed}-{d}") for d in ("rx", "tx", "frames")}
        self._pending = ([("stall", k, s) for k, s in self.spec.stalls]
                         + [("reset", k, None) for k in self.spec.resets]
                         + [("disconnect", k, None) for k in self.spec.disconnects])
        self.fired: list[tuple[str, int]] = []
        self.outputs = OutputFaults(self.spec, seed)

    def wire(self, data: bytes, direction: str) -> bytes:
        """Drop and corrupt bytes of `data` going `direction` ("rx" to the device, "tx" from it)."""
        drop, corrupt = self.spec.drop, self.spec.corrupt
        if not (drop or corrupt) or not data:
            return data
        rng, out = self._rng[direction], bytearray()
        for byte in data:
            if drop and rng.random() < drop:
                continue
            if corrupt and rng.random() < corrupt:
                byte ^= rng.randrange(1, 256)
            out.append(byte)
        return bytes(out)

    def frame(self, wire: bytes) -> list[bytes]:
        """What goes on the line for one device frame: maybe garbage before, maybe twice."""
        rng, out = self._rng["frames"], [wire]
        if self.spec.garbage and rng.random() < self.spec.garbage:
            out.insert(0, _garbage_text(rng))
        if self.spec.dup and rng.random() < self.spec.dup:
            out.append(wire)
        return out

    def before_record(self, record: int) -> list[tuple[str, float | None]]:
        """Record faults due now (each fires once): [("stall", secs) | ("reset"|"disconnect", None)]."""
        due = [p for p in self._pending if p[1] == record]
        for p in due:
            self._pending.remove(p)
            self.fired.append((p[0], record))
        return [(kind, arg) for kind, _, arg in due]


    def perturb(self, op: int, dtype: str, data: bytes) -> bytes:
        """Operator `op`'s output bytes as the dump reports them: every element PERTURB_STEPS
        away (up, or down near the type's top) when op is the perturb_op fault's operator."""
        if op != self.spec.perturb_op or not data:
            return data
        values = np.frombuffer(data, dtype=np.dtype(dtype))
        if values.dtype.kind in "iu":
            info = np.iinfo(values.dtype)
            wide = values.astype(np.int64)
            shifted = np.where(wide > info.max - PERTURB_STEPS, wide - PERTURB_STEPS, wide + PERTURB_STEPS)
            return shifted.astype(values.dtype).tobytes()
        return (values + PERTURB_STEPS).astype(values.dtype).tobytes()


def _garbage_text(rng: random.Random) -> bytes:
    words = ("dbg", "heap", "tick", "usb", "isr", "warn", "mbed", "retry")
    text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
    return f"[{text}] {rng.randint(0, 99999)}\r\n".encode("ascii")


# ----------------------------------------------------------------------------- output faults

class OutputFaults:
    """Wrong results on a well-behaved link: off by one step, or stuck at an earlier record's."""

    def __init__(self, spec: FaultSpec, seed: int = 0):
        self.off_by_one, self.stuck = spec.off_by_one, spec.stuck
        self._rng = random.Random(f"deploykit-faults-{seed}-outputs")
        self._last: bytes | None = None
        self.counts = {"off_by_one": 0, "stuck": 0}

    def apply(self, result: bytes, specs) -> bytes:
        """The result to send for one record; `specs` are the output TensorSpecs (HELLO's)."""
        if not (self.off_by_one or self.stuck):
            return result
        stuck = self.stuck and self._rng.random() < self.stuck
        off = self.off_by_one and self._rng.random() < self.off_by_one
        if stuck and self._last is not None:
            result = self._last
            self.counts["stuck"] += 1
        elif off:
            result = _one_step_off(result, specs, self._rng)
            self.counts["off_by_one"] += 1
        self._last = result
        return result


def _one_step_off(result: bytes, specs, rng: random.Random) -> bytes:
    """`result` with one element of its first output tensor moved by one step of its type."""
    import numpy as np

    spec = specs[0]
    dtype = np.dtype(spec.dtype.name).newbyteorder("<")
    count = spec.nbytes // dtype.itemsize
    if count == 0:
        return result
    values = np.frombuffer(result, dtype=dtype, count=count).copy()
    i = rng.randrange(count)
    if dtype.kind == "f":
        values[i] = np.nextafter(values[i], np.inf if values[i] < np.finfo(dtype).max else -np.inf)
    else:
        values[i] = int(values[i]) + (-1 if values[i] == np.iinfo(dtype).max else 1)
    return values.tobytes() + result[values.nbytes:]
