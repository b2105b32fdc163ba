"""Project the host's TFLM arena figures onto 32-bit microcontroller builds.

The TFLM Python interpreter on this x86-64 host reports, per allocation category, what
its RecordingMicroAllocator used. A 32-bit build of the same sources differs in:
  * pointer width: TfLiteEvalTensor 24 -> 12 bytes, a NodeAndRegistration 64 -> 32,
    TfLiteAffineQuantization 24 -> 12;
  * enum width: arm-none-eabi packs enums into 1 byte, so TfLiteTensor is 32 bytes there,
    40 on a 32-bit ABI with 4-byte enums (ESP32's Xtensa, x86-32), 64 on x86-64;
  * the kernels' persistent buffers: CMSIS-NN keeps larger op data per kernel and asks
    for im2col scratch buffers for convolutions;
  * the allocator objects themselves (the recording allocator is larger than the plain
    one a firmware uses).
Each category is projected on its own (counts x target sizes where the layout is known,
host figures as an upper bound where it is not), then the transient peak AllocateTensors
needs above the final use is added, so the figure is an arena size that allocates.
Checked against real builds (arena_used_bytes() and the smallest arena AllocateTensors
accepts, found by bisection) of TFLM's sources of Aug 2026 (as in the `tflite-micro`
package) built like its Makefile (TF_LITE_STATIC_MEMORY), of the Chirale_TensorFlowLite
Arduino library most board files pin (no TF_LITE_STATIC_MEMORY) and of the Oct 2022 TFLM
in tflite-micro-arduino-examples@25b752e (Teensy 4.1), on the int8 examples as converted
(dense layers per tensor):

                    build                         used   min   projected  over min
    sine            Cortex-M4 reference            676  1068     1376       +29 %
                    Cortex-M4 CMSIS-NN             772  1156     1472       +27 %
                    Cortex-M4 Chirale (CMSIS-NN)   820  1144     1472       +29 %
                    Cortex-M4 2022 lib (CMSIS-NN)  708  1104     1472       +33 %
                    ESP-NN on a 32-bit host ABI    716  1100     1440       +31 %
    linear          Cortex-M4 reference            436   620      912       +47 %
                    Cortex-M4 CMSIS-NN             468   644      944       +47 %
                    Cortex-M4 Chirale (CMSIS-NN)   516   768      944       +23 %
                    ESP-NN on a 32-bit host ABI    460   660      944       +43 %
    gestures        Cortex-M4 reference           1364  1648     2032       +23 %
                    Cortex-M4 CMSIS-NN            1476  1780     2224       +25 %
                    Cortex-M4 Chirale (CMSIS-NN)  1588  1828     2224       +22 %
                    ESP-NN on a 32-bit host ABI   1388  1740     2112       +21 %

With per-channel dense weights (the issue's figures: sine 932 reference, 1028 CMSIS-NN,
972 x86-32 used) the projection also stayed above every build's smallest arena. It was
never below; it wastes 280-470 bytes on these small models. Each part was at least its
counterpart in these builds (the fixed allocator objects and the op data of optimized
kernels are calibrated on them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from deploykit.arena_classes import ARENA_CLASSES

ALIGN = 16
MARGIN_PERCENT = 10  # the default margin over the projection a firmware's arena is given

# Allocator objects, planner, subgraph table and I/O pointer arrays a firmware's
# MicroInterpreter keeps in the arena, apart from the recorded categories and the ops'
# builtin data (measured on 32-bit builds: 124 B on Cortex-M4, 148 B on x86-32).
FIXED_32 = 160

# sizeof(TfLite*Params) on a 32-bit ABI with 4-byte enums (Cortex-M's 1-byte enums make
# some smaller, never larger): the builtin data each op keeps in the arena.
BUILTIN_DATA_32 = {
    "ADD": 8, "SUB": 8, "MUL": 4, "DIV": 4, "FULLY_CONNECTED": 16, "CONV_2D": 28,
    "DEPTHWISE_CONV_2D": 28, "TRANSPOSE_CONV": 20, "AVERAGE_POOL_2D": 40, "MAX_POOL_2D": 40,
    "L2_POOL_2D": 40, "RESHAPE": 36, "SQUEEZE": 36, "SOFTMAX": 4, "CONCATENATION": 8,
    "STRIDED_SLICE": 24, "PACK": 8, "UNPACK": 8, "GATHER": 8, "SPLIT": 4, "SPLIT_V": 4,
    "SVDF": 12, "UNIDIRECTIONAL_SEQUENCE_LSTM": 16, "LEAKY_RELU": 4, "SHAPE": 4,
    "ARG_MAX": 4, "ARG_MIN": 4, "MEAN": 4, "SUM": 4, "REDUCE_MAX": 4, "REDUCE_MIN": 4,
    "CAST": 8, "BATCH_MATMUL": 4, "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4,
    "DEPTH_TO_SPACE": 4, "SPACE_TO_DEPTH": 4, "MIRROR_PAD": 4, "IF": 8, "WHILE": 8,
    "CALL_ONCE": 4, "VAR_HANDLE": 8, "CUMSUM": 4, "GELU": 4,
}
BUILTIN_DATA_DEFAULT = 40  # the largest non-StableHLO params struct (TfLitePoolParams)


@dataclass(frozen=True)
class ArenaTarget:
    """Struct sizes and kernel behaviour of one 32-bit target class."""

    # The Arduino library the boards pin (Chirale_TensorFlowLite) is built without
    # TF_LITE_STATIC_MEMORY: its TfLiteTensor is 64 B and a NodeAndRegistration 44 B on
    # 32-bit, against 32/40 B and 32 B for a TFLM Makefile build; take the larger.
    tensor: int = 64            # sizeof(TfLiteTensor)
    eval_tensor: int = 12       # sizeof(TfLiteEvalTensor)
    node_and_registration: int = 44
    quant_ratio: float = 0.75   # TfLiteAffineQuantization 24 -> 12 B; zero-point arrays stay
    op_data_extra: int = 0      # extra persistent op data per optimized kernel
    optimized_ops: tuple[str, ...] = ()
    im2col: bool = False        # CMSIS-NN (DSP) convolutions request an im2col scratch buffer


TARGETS: dict[str, ArenaTarget] = {
    "cortex-m-reference": ArenaTarget(),
    "cortex-m-cmsis-nn": ArenaTarget(op_data_extra=32, im2col=True,
                                optimized_ops=("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
                                               "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "ADD",
                                               "MUL", "SVDF", "TRANSPOSE_CONV", "BATCH_MATMUL",
                                               "PAD", "TRANSPOSE", "MAXIMUM", "MINIMUM",
                                               "UNIDIRECTIONAL_SEQUENCE_LSTM")),
    "esp32-esp-nn": ArenaTarget(tensor=72, op_data_extra=16,
                           optimized_ops=("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
                                          "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "ADD", "MUL")),
}
TARGET_CLASSES = ARENA_CLASSES   # the one list; TARGETS has exactly these keys (tests/test_boards.py)

_CATEGORY = {
    "eval": "TfLiteEvalTensor data",
    "tensor": "Persistent TfLiteTensor data",
    "quant": "Persistent TfLiteTensor quantization data",
    "buffers": "Persistent buffer data",
    "nodes": "NodeAndRegistration struct",
}


def project(measured: dict, parsed=None) -> dict:
    """{target class: arena bytes} for the figures tflm_host.measure_arena() returned.

    `parsed` (a tflite_model.TfliteModel) lets kernel-specific buffers be counted.
    """
    return {name: project_one(measured, target, parsed) for name, target in TARGETS.items()}


def project_one(measured: dict, target: ArenaTarget, parsed=None) -> int:
    """Bytes a `target` build needs for AllocateTensors to succeed, rounded up to 16."""
    cats = measured.get("categories") or {}
    used = {k: cats.get(v, {}).get("used", 0) for k, v in _CATEGORY.items()}
    count = {k: cats.get(v, {}).get("count", 0) for k, v in _CATEGORY.items()}
    ops = [o.op for o in parsed.operators] if parsed is not None else []
    remainder = FIXED_32 + _builtin_bytes(ops, count["nodes"])
    tail = (count["eval"] * target.eval_tensor
            + count["tensor"] * target.tensor
            + math.ceil(used["quant"] * target.quant_ratio)
            + used["buffers"] + target.op_data_extra * sum(op in target.optimized_ops for op in ops)
            + count["nodes"] * target.node_and_registration
            + remainder)
    head = measured["head"] + (_im2col_bytes(parsed) if target.im2col and parsed is not None else 0)
    transient = max(measured["host_min"] - measured["host_recorded"], 0)
    return round16(head) + round16(tail) + round16(transient)


def _builtin_bytes(ops: list[str], op_count: int) -> int:
    """Builtin op data of every op; the worst case per op when the ops are not known."""
    if not ops:
        return op_count * BUILTIN_DATA_DEFAULT
    return sum((BUILTIN_DATA_32.get(op, BUILTIN_DATA_DEFAULT) + 3) // 4 * 4 for op in ops)


def _im2col_bytes(parsed) -> int:
    """Sum of CMSIS-NN (DSP) im2col scratch buffers: 2 columns of int16 per convolution."""
    total = 0
    for o in parsed.operators:
        if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(o.inputs) > 1:
            w = parsed.tensors[o.inputs[1]].shape
            cols = int(w[1] * w[2] * (w[3] if o.op == "CONV_2D" else 1)) if len(w) == 4 else 0
            total += round16(2 * ((cols + 3) // 4 * 4) * 2)
    return total


def round16(n) -> int:
    """`n` (an int or an exact Fraction) rounded up to a multiple of 16: TFLM's arena alignment."""
    return -(-Fraction(n) // ALIGN) * ALIGN


def with_margin(used: int, margin_pct: float | int = MARGIN_PERCENT) -> int:
    """The arena to configure for `used` bytes: + `margin_pct` %, rounded up to 16.

    The one home of this rule (render sizes the arena with it, the virtual board reports it
    in HELLO, the report recommends it). Exact arithmetic: `used * 1.1` in floats lands just
    above a multiple of 16 for some sizes (1600 * 1.1 = 1760.0000000000002) and would add 16."""
    return round16(Fraction(int(used)) * (100 + Fraction(str(margin_pct))) / 100)



BASIS = ("per allocation category: TfLiteEvalTensor/TfLiteTensor/NodeAndRegistration counts "
         "x 32-bit sizes; host persistent buffers plus optimized-kernel op data; allocator "
         "objects and 32-bit builtin op data; activations (head) as planned on the host plus "
         "kernel scratch; plus the host's transient peak during AllocateTensors; each part "
         "rounded up to 16 bytes")
