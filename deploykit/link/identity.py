"""Is this the device the run expects? One check of HELLO, against the manifest or the first HELLO.

A result is only worth keeping from a device whose identity was checked (ARCHITECTURE.md).
`differences(hello, expected)` is that check: every field of HELLO that says which
firmware runs, compared with an `Expected` identity. When the harness connects, the
expectation comes from the manifest (and the board asked for); after a reboot mid-run it
is the session's first HELLO, so a device that comes back as other firmware is caught.
Each difference is named, so the one-line error says what is wrong instead of the run
timing out later.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from deploykit.errors import BadInput, DeviceError
from deploykit.protocol.spec import CAPABILITY_NOTES, PROTOCOL_VERSION

REFLASH = "render, build and flash the firmware for this manifest (`deploykit deploy`)"


class IdentityMismatch(DeviceError):
    """The device is not (or is no longer) the firmware the run expects."""


class DeviceChanged(IdentityMismatch):
    """A HELLO after a reboot announced other firmware than the first one; never adopted."""


def _f32(value) -> float:
    """The value as HELLO carries it (a float32); NaN for one that cannot be."""
    try:
        return struct.unpack("<f", struct.pack("<f", float(value or 0.0)))[0]
    except (OverflowError, ValueError, TypeError):
        return float("nan")


@dataclass(frozen=True)
class Spec:
    """One tensor as HELLO describes it: dtype name, shape, scale (as f32), zero point."""

    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @classmethod
    def of_hello(cls, spec) -> Spec:
        return cls(spec.dtype.name, tuple(spec.shape), spec.scale, spec.zero_point)

    @classmethod
    def of_manifest(cls, spec: dict) -> Spec:
        zero_point = spec.get("zero_point") or 0
        return cls(str(spec.get("dtype")), tuple(int(d) for d in spec.get("shape", [])),
                   _f32(spec.get("scale")), int(zero_point) if isinstance(zero_point, (int, float)) else -1)


@dataclass(frozen=True)
class Expected:
    """The identity a device must announce; None fields are not checked."""

    model_sha256: str
    inputs: tuple[Spec, ...]
    outputs: tuple[Spec, ...]
    board_id: str | None = None
    firmware_id: bytes | None = None
    protocol_version: int = PROTOCOL_VERSION

    @classmethod
    def of_manifest(cls, manifest, board: str | None = None) -> Expected:
        """What a run of `manifest` expects when it connects (board: the one asked for, if any)."""
        return cls(str(manifest.sha256).lower(), tuple(map(Spec.of_manifest, manifest["inputs"])),
                   tuple(map(Spec.of_manifest, manifest["outputs"])), board or None)

    @classmethod
    def of_hello(cls, hello) -> Expected:
        """What a device must announce again after a reboot: everything its first HELLO said."""
        return cls(hello.model_sha256.hex(), tuple(map(Spec.of_hello, hello.inputs)),
                   tuple(map(Spec.of_hello, hello.outputs)), hello.board_id, hello.firmware_id,
                   hello.protocol_version)


def _spec_differences(side: str, got: tuple[Spec, ...], want: tuple[Spec, ...]) -> list[str]:
    if len(got) != len(want):
        return [f"{len(got)} {side} (expected {len(want)})"]
    out = []
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        fields = [f"{name} {_show(getattr(g, name))} (expected {_show(getattr(w, name))})"
                  for name in ("dtype", "shape", "scale", "zero_point") if getattr(g, name) != getattr(w, name)]
        if fields:
            out.append(f"{side[:-1]} {i} has " + ", ".join(fields).replace("zero_point", "zero point"))
    return out


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(list(value)) if isinstance(value, tuple) else str(value)


def differences(hello, expected: Expected) -> list[str]:
    """Everything `hello` announces differently from `expected`, one phrase each."""
    out = []
    if hello.protocol_version != expected.protocol_version:
        out.append(f"protocol version {hello.protocol_version} (expected {expected.protocol_version})")
    if hello.model_sha256.hex() != expected.model_sha256:
        out.append(f"model sha256 {hello.model_sha256.hex()[:16]}… (expected {expected.model_sha256[:16]}…)")
    if expected.board_id is not None and hello.board_id != expected.board_id:
        out.append(f"board {hello.board_id!r}, not {expected.board_id!r}")
    if expected.firmware_id is not None and hello.firmware_id != expected.firmware_id:
        out.append(f"firmware id {hello.firmware_id.hex() or 'none'} (expected {expected.firmware_id.hex() or 'none'})")
    out += _spec_differences("inputs", tuple(map(Spec.of_hello, hello.inputs)), expected.inputs)
    out += _spec_differences("outputs", tuple(map(Spec.of_hello, hello.outputs)), expected.outputs)
    return out


def check(hello, manifest, board: str | None, url: str) -> None:
    """At connect: raise IdentityMismatch naming every way `hello` is not the run's firmware."""
    found = differences(hello, Expected.of_manifest(manifest, board))
    if found:
        hint = f"check --port, or pass --board {hello.board_id}; else " if board and hello.board_id != board else ""
        raise IdentityMismatch(f"the device on {url} does not run this manifest's firmware: "
                               f"{'; '.join(found)}; {hint}{REFLASH}")


def check_same(first, again, url: str) -> None:
    """After a reboot: raise DeviceChanged when `again` announces other firmware than `first`."""
    found = differences(again, Expected.of_hello(first))
    if found:
        raise DeviceChanged(f"the device on {url} came back from a reboot as other firmware "
                            f"({'; '.join(found)}); the run stops rather than mix two firmwares' results; "
                            "check what else flashed or uses this port, then run again")


def unreadable_hello(url: str, version: int, why: Exception) -> IdentityMismatch:
    """The error for a HELLO this deploykit cannot read (another protocol version, bad fields)."""
    if version != PROTOCOL_VERSION:
        what = f"speaks protocol version {version}, this deploykit speaks {PROTOCOL_VERSION}"
    else:
        what = f"sent a HELLO this deploykit cannot read ({why})"
    return IdentityMismatch(f"the device on {url} {what}; {REFLASH} with this deploykit")


def require_capability(hello, capability, render_option: str, url: str) -> None:
    """Refuse (BadInput, exit 2) an optional request the device's firmware was not built with."""
    if not hello.capabilities & int(capability):
        what = CAPABILITY_NOTES[capability].replace(" (reserved)", "")
        raise BadInput(f"the firmware on {url} was built without {what} (HELLO capability "
                       f"{capability.name}); render it with {render_option}, build and flash it again")
