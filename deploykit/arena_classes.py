"""The arena classes: the names of the 32-bit build kinds whose TFLM arena differs.

One list, shared by the two stages that use it without either depending on the other:
model/arena.py projects the host's arena onto each class (its TARGETS are keyed by these
names) and firmware/boards.py checks that a board file's `arena_class` is one of them.
"""

from __future__ import annotations

ARENA_CLASSES: tuple[str, ...] = (
    "cortex-m-reference",   # TFLM reference kernels, arm-none-eabi (1-byte enums)
    "cortex-m-cmsis-nn",    # TFLM cmsis_nn kernels (larger op data, im2col scratch)
    "esp32-esp-nn",         # 32-bit ABI with 4-byte enums (Xtensa, RISC-V GCC)
)
