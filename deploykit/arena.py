"""Project the host's TFLM arena figures onto 32-bit microcontroller builds.

First version: the x86-64 recording figure, an upper bound for 32-bit targets (pointers
and TfLiteTensor shrink). Refined per allocation category below once verified.
"""

from __future__ import annotations

TARGET_CLASSES = ("cortex-m-reference", "cortex-m-cmsis-nn", "esp32-esp-nn")


def project(measured: dict) -> dict:
    """{target class: bytes} for the figures measure_arena() returned."""
    return {cls: int(measured["host_recorded"]) for cls in TARGET_CLASSES}
