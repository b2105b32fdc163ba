"""Is this the device the run expects? HELLO checked against the manifest, and against itself.

A result is only worth keeping from a device whose identity was checked (ARCHITECTURE.md):
when the harness connects, every field of HELLO that describes the firmware is compared
with what the run expects (differences()); after a reboot mid-run the new HELLO must
announce the same firmware as the first one (changes()). Either way each difference is
named, so the one-line error says what is wrong rather than timing out later.
"""

from __future__ import annotations

import struct

from deploykit.errors import DeviceError
from deploykit.protocol.spec import PROTOCOL_VERSION, DType

REFLASH = "render, build and flash the firmware for this manifest (`deploykit deploy`)"


class IdentityMismatch(DeviceError):
    """The device is not (or is no longer) the firmware the run expects."""


class DeviceChanged(IdentityMismatch):
    """A HELLO after a reboot announced other firmware than the first one; never adopted."""


def _f32(value) -> float:
    """The value as HELLO carries it (a float32)."""
    try:
        return struct.unpack("<f", struct.pack("<f", float(value or 0.0)))[0]
    except (OverflowError, ValueError, TypeError):
        return float("nan")


def _spec_text(spec) -> str:
    name = spec.dtype.name if isinstance(spec.dtype, DType) else str(spec.dtype)
    return f"{name}{list(spec.shape)} scale {spec.scale:.9g} zero point {spec.zero_point}"


def spec_differences(side: str, device, manifest) -> list[str]:
    """Tensor specs of one side (inputs/outputs): device HELLO against manifest dicts."""
    if len(device) != len(manifest):
        return [f"{len(device)} {side} announced, the manifest has {len(manifest)}"]
    out = []
    for i, (dev, want) in enumerate(zip(device, manifest, strict=True)):
        fields = []
        if dev.dtype.name != want.get("dtype"):
            fields.append(f"dtype {dev.dtype.name} (manifest {want.get('dtype')})")
        if list(dev.shape) != [int(d) for d in want.get("shape", [])]:
            fields.append(f"shape {list(dev.shape)} (manifest {list(want.get('shape', []))})")
        if dev.scale != _f32(want.get("scale")):
            fields.append(f"scale {dev.scale:.9g} (manifest {want.get('scale')})")
        if dev.zero_point != int(want.get("zero_point") or 0):
            fields.append(f"zero point {dev.zero_point} (manifest {want.get('zero_point')})")
        if fields:
            out.append(f"{side[:-1]} {i} has " + ", ".join(fields))
    return out


def differences(hello, manifest, board: str | None = None) -> list[str]:
    """Everything about `hello` that is not what a run of `manifest` (on `board`) expects."""
    out = []
    if hello.protocol_version != PROTOCOL_VERSION:
        out.append(f"protocol version {hello.protocol_version} (this deploykit speaks {PROTOCOL_VERSION})")
    if hello.model_sha256.hex() != str(manifest.sha256).lower():
        out.append(f"model sha256 {hello.model_sha256.hex()[:16]}… (manifest {str(manifest.sha256)[:16]}…)")
    if board and hello.board_id != board:
        out.append(f"board {hello.board_id!r}, not {board!r} (check --port, or pass --board {hello.board_id})")
    out += spec_differences("inputs", hello.inputs, manifest["inputs"])
    out += spec_differences("outputs", hello.outputs, manifest["outputs"])
    return out


def check(hello, manifest, board: str | None, url: str) -> None:
    """Raise IdentityMismatch naming every difference between `hello` and the run's expectation."""
    found = differences(hello, manifest, board)
    if found:
        raise IdentityMismatch(f"the device on {url} does not run this manifest's firmware: "
                               f"{'; '.join(found)}; {REFLASH}")


def changes(first, again) -> list[str]:
    """What a later HELLO (after a reboot) announces differently from the first one."""
    out = []
    if again.model_sha256 != first.model_sha256:
        out.append(f"model sha256 {first.model_sha256.hex()[:16]}… → {again.model_sha256.hex()[:16]}…")
    if again.board_id != first.board_id:
        out.append(f"board {first.board_id!r} → {again.board_id!r}")
    if again.firmware_id != first.firmware_id:
        out.append(f"firmware id {first.firmware_id.hex() or 'none'} → {again.firmware_id.hex() or 'none'}")
    for side in ("inputs", "outputs"):
        was, now = getattr(first, side), getattr(again, side)
        if was != now:
            out.append(f"{side} {', '.join(map(_spec_text, was))} → {', '.join(map(_spec_text, now))}")
    return out


def check_same(first, again, url: str) -> None:
    """Raise DeviceChanged when a HELLO after a reboot announces other firmware than the first."""
    found = changes(first, again)
    if found:
        raise DeviceChanged(f"the device on {url} came back from a reboot as other firmware "
                            f"({'; '.join(found)}); the run stops rather than mix two firmwares; "
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
    from deploykit.errors import BadInput
    from deploykit.protocol.spec import CAPABILITY_NOTES
    if not hello.capabilities & int(capability):
        what = CAPABILITY_NOTES[capability].replace(" (reserved)", "")
        raise BadInput(f"the firmware on {url} was built without {what} (HELLO capability "
                       f"{capability.name}); render it with {render_option}, build and flash it again")
