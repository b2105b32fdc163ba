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
972 x86-32 used) the projection also stayed above every build's smallest arena.

Models above 10 KB (tests/fixtures/cortex_m4_measured.json, tests/test_arena_measured.py):
tflite-micro 90b983c built with its Makefile for Cortex-M4 (reference and cmsis_nn with
CMSIS-NN 4ab83cc), run under QEMU mps2-an386, smallest arena bisected to the byte:

                 reference: real  projected         CMSIS-NN: real  before    now
    cnn_small         15,272  15,568 +1.9 %               15,324  15,888  15,616 +1.9 %
    cnn_rgb           22,440  22,752 +1.4 %               22,524  24,816  22,800 +1.2 %
    dscnn             22,668  23,136 +2.1 %               22,720  24,896  23,200 +2.1 %
    mobilenet 64      55,040  55,504 +0.8 %               55,092  56,864  55,568 +0.9 %
    resnet            67,924  68,320 +0.6 %               68,008  71,056  68,368 +0.5 %
    mobilenet 96     116,480 116,944 +0.4 %              116,532 118,304 117,008 +0.4 %

CMSIS-NN was over because every convolution's im2col buffer was added to the head:
TFLM plans scratch buffers like tensors alive during their operator only, so they
mostly fit beside the live activations (arena_plan.py re-runs TFLM's planner), and the
32 B of extra op data per optimized kernel was 4-24 B measured (FULLY_CONNECTED 24).
The ESP-NN class is unchanged (no Xtensa toolchain here to check it against).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from deploykit.arena_classes import ARENA_CLASSES
from deploykit.model import arena_plan

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
    op_data_extra: int = 0      # extra persistent op data per optimized kernel not measured
    optimized_ops: tuple[str, ...] = ()
    # measured extra persistent op data per optimized kernel, (op, bytes) pairs
    op_data_measured: tuple[tuple[str, int], ...] = ()
    # "cmsis-nn": the head is re-planned with CMSIS-NN's scratch buffers (arena_plan.py)
    scratch: str = ""


TARGETS: dict[str, ArenaTarget] = {
    "cortex-m-reference": ArenaTarget(),
    # op_data_measured: the bytes the cmsis_nn kernels' Init/Prepare request beyond the
    # reference kernels' (RecordingMicroAllocator "Persistent buffer data", requested,
    # CMSIS-NN build minus reference build of TFLM 90b983c for Cortex-M4 under QEMU, on
    # 9 models: FULLY_CONNECTED 24 (its OpData adds 5 ints and kernel_sums), SOFTMAX 8,
    # CONV_2D/DEPTHWISE_CONV_2D/pools 4 (buffer_idx), ADD 0). The host's per-buffer
    # figures, with 8-byte pointers, leave more than the 32-bit alignment of these.
    "cortex-m-cmsis-nn": ArenaTarget(op_data_extra=32, scratch="cmsis-nn",
                                op_data_measured=(("FULLY_CONNECTED", 24), ("SOFTMAX", 8),
                                                  ("CONV_2D", 4), ("DEPTHWISE_CONV_2D", 4),
                                                  ("AVERAGE_POOL_2D", 4), ("MAX_POOL_2D", 4),
                                                  ("ADD", 0)),
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
            + used["buffers"] + _op_data_extra(ops, target)
            + count["nodes"] * target.node_and_registration
            + remainder)
    head = _head(measured, target, parsed)
    transient = max(measured["host_min"] - measured["host_recorded"], 0)
    return round16(head) + round16(tail) + round16(transient)


def _op_data_extra(ops: list[str], target: ArenaTarget) -> int:
    """Persistent op data the target's optimized kernels keep beyond the reference ones."""
    measured = dict(target.op_data_measured)
    return sum(measured.get(op, target.op_data_extra) for op in ops if op in target.optimized_ops)


def _builtin_bytes(ops: list[str], op_count: int) -> int:
    """Builtin op data of every op; the worst case per op when the ops are not known."""
    if not ops:
        return op_count * BUILTIN_DATA_DEFAULT
    return sum((BUILTIN_DATA_32.get(op, BUILTIN_DATA_DEFAULT) + 3) // 4 * 4 for op in ops)


def _head(measured: dict, target: ArenaTarget, parsed) -> int:
    """The activation area of a `target` build: the host's, re-planned with the target's
    kernels' scratch buffers. TFLM plans a scratch buffer like a tensor that lives during
    its operator only, so it often fits beside the live activations at no cost; summing
    the buffers over operators (as this did) gave CMSIS-NN 1-6 % too much on conv models.
    Where re-planning the host's own case does not reproduce the host's head (a model
    the planner model does not cover), the largest single buffer is added instead."""
    host = measured["head"]
    if target.scratch != "cmsis-nn" or parsed is None:
        return host
    requests = arena_plan.cmsis_nn_requests(parsed)
    if not requests:
        return host
    if arena_plan.head(parsed, []) != host:
        return host + max(round16(b) for _, b in requests)
    return max(arena_plan.head(parsed, requests) or host, host)


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
