"""The 32-bit arena projection against real Cortex-M4 builds of TFLM (host-only tests).

tests/fixtures/cortex_m4_measured.json holds, for ten int8 models (sine, linear and
gestures as deploykit's examples convert them; a 640-input dense autoencoder; small CNNs
on 28x28x1 and 32x32x3; a DS-CNN keyword spotter on 49x10; a residual CNN; MobileNet-style
depthwise-separable stacks on 64x64x3 and 96x96x3), their graph without weights, the
host's arena measurement (tflm_host.measure_arena with the pinned tflite-micro wheel)
and what real builds measured: tflite-micro 90b983c (the wheel's commit) built with its
Makefile (TARGET=cortex_m_qemu TARGET_ARCH=cortex-m4 BUILD_TYPE=release, reference
kernels, and OPTIMIZED_KERNEL_DIR=cmsis_nn with CMSIS-NN 4ab83cc), arm-none-eabi-gcc
12.2, run under QEMU 7.2 (mps2-an386, a Cortex-M4): the smallest arena with which
AllocateTensors and Invoke succeed (bisected to the byte; one byte less fails) and the
RecordingMicroAllocator's head. The builds live outside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploykit.model import arena, arena_plan
from deploykit.model.tflite_model import Operator, Subgraph, Tensor, TfliteModel

FIXTURE = Path(__file__).parent / "fixtures" / "cortex_m4_measured.json"
CLASS = {"ref": "cortex-m-reference", "cmsis": "cortex-m-cmsis-nn"}


def measured_models() -> dict:
    """{name: (TfliteModel without weights, host measurement, {build: device figures})}."""
    out = {}
    for name, e in json.loads(FIXTURE.read_text()).items():
        tensors = [Tensor(index=i, name=f"t{i}", dtype=dt, shape=shape, scales=[1.0] * n_scales,
                          zero_points=[0] * n_scales, constant=bool(const), variable=bool(var))
                   for i, (dt, shape, n_scales, const, var) in enumerate(e["tensors"])]
        ops = [Operator(**{**o, "kernel": tuple(o["kernel"]), "stride": tuple(o["stride"]),
                           "dilation": tuple(o["dilation"])}) for o in e["operators"]]
        graph = Subgraph(0, "main", tensors, ops, e["inputs"], e["outputs"])
        model = TfliteModel(size=e["size"], tensors=tensors, operators=ops, input_indices=e["inputs"],
                            output_indices=e["outputs"], subgraphs=[graph])
        out[name] = (model, e["host"], e["device"])
    return out


MODELS = measured_models()


# CMSIS-NN 4ab83cc's arm_convolve_wrapper_s8_get_buffer_size, arm_depthwise_conv_wrapper_s8_
# get_buffer_size and arm_avgpool_s8_get_buffer_size compiled with arm-none-eabi-gcc 12.2
# -mcpu=cortex-m4 -O2 (ARM_MATH_DSP) and called under QEMU mps2-an386 with these shapes
# (padding as TFLM computes it): the bytes printed are the expected values.
SCRATCH_CASES = [
    # kind, input NHWC, filter, output NHWC, stride, dilation, bytes measured
    ("conv", (1, 64, 64, 3), (16, 3, 3, 3), (1, 32, 32, 16), (2, 2), (1, 1), 112),     # stem, 27 -> 28 cols
    ("conv", (1, 32, 32, 16), (32, 1, 1, 16), (1, 32, 32, 32), (1, 1), (1, 1), 0),     # 1x1 fast (GCC: 0)
    ("conv", (1, 32, 32, 16), (32, 1, 1, 16), (1, 16, 16, 32), (2, 2), (1, 1), 0),     # 1x1 stride 2
    ("conv", (1, 16, 16, 16), (32, 3, 3, 16), (1, 16, 16, 32), (1, 1), (1, 1), 576),   # 3x3 SAME
    ("conv", (1, 49, 10, 1), (64, 10, 4, 1), (1, 25, 5, 64), (2, 2), (1, 1), 160),     # DS-CNN stem
    ("conv", (1, 1, 32, 8), (16, 1, 5, 8), (1, 1, 28, 16), (1, 1), (1, 1), 160),       # 1xN
    ("conv", (1, 28, 28, 1), (8, 3, 3, 1), (1, 26, 26, 8), (1, 1), (1, 1), 48),        # 9 -> 12 cols
    ("dw", (1, 32, 32, 16), (1, 3, 3, 16), (1, 32, 32, 16), (1, 1), (1, 1), 0),        # 3x3 kernel
    ("dw", (1, 32, 32, 32), (1, 3, 3, 32), (1, 16, 16, 32), (2, 2), (1, 1), 0),
    ("dw", (1, 16, 16, 32), (1, 5, 5, 32), (1, 16, 16, 32), (1, 1), (1, 1), 1600),     # s8_opt
    ("dw", (1, 16, 16, 8), (1, 3, 3, 16), (1, 16, 16, 16), (1, 1), (1, 1), 0),         # multiplier 2
    ("dw", (1, 16, 16, 8), (1, 3, 3, 8), (1, 16, 16, 8), (1, 1), (2, 2), 0),           # dilated
    ("avg", (1, 25, 5, 64), None, (1, 1, 1, 64), (25, 5), (1, 1), 256),
]


@pytest.mark.parametrize("case", SCRATCH_CASES, ids=lambda c: f"{c[0]}{c[2]}{c[4]}")
def test_cmsis_nn_scratch_sizes_are_the_real_cmsis_nn_functions(case):
    kind, inp, filt, out, stride, dilation, want = case
    if kind == "conv":
        got = arena_plan.conv_s8_scratch(inp, filt, out, stride, dilation)
    elif kind == "dw":
        got = arena_plan.depthwise_s8_scratch(inp, filt, out, stride, dilation)
    else:
        got = arena_plan.avgpool_s8_scratch(out)
    assert got == want


@pytest.mark.parametrize("name", MODELS)
def test_replanning_gives_the_heads_the_real_builds_allocated(name):
    """TFLM's greedy planner re-run in Python: the host's head (reference kernels), and
    the heads the Cortex-M4 builds allocated with reference and with CMSIS-NN kernels."""
    model, host, device = MODELS[name]
    assert arena_plan.head(model, []) == host["head"] == device["ref"]["head"]
    assert arena_plan.head(model, arena_plan.cmsis_nn_requests(model)) == device["cmsis"]["head"]


def test_a_cmsis_nn_scratch_buffer_shares_memory_with_dead_activations():
    """gestures' conv scratch (64 B) grows the head by 48 B; cnn_rgb's three (1,840 B in
    all) by nothing. Adding each conv's im2col to the head, as before, gave 10 % too much."""
    gestures, rgb = MODELS["gestures"][0], MODELS["cnn_rgb"][0]
    assert arena_plan.cmsis_nn_requests(gestures) == [(1, 64)]
    assert arena_plan.head(gestures, arena_plan.cmsis_nn_requests(gestures)) - arena_plan.head(gestures, []) == 48
    assert sum(b for _, b in arena_plan.cmsis_nn_requests(rgb)) == 1840
    assert arena_plan.head(rgb, arena_plan.cmsis_nn_requests(rgb)) == arena_plan.head(rgb, [])


@pytest.mark.parametrize("name", MODELS)
def test_projection_is_never_below_the_real_minimum_and_within_3_percent_above_10_kb(name):
    model, host, device = MODELS[name]
    projected = arena.project(host, model)
    for build, cls in CLASS.items():
        real = device[build]["min_arena"]
        assert projected[cls] >= real, (cls, projected[cls], real)
        if real > 10_000:
            assert projected[cls] <= 1.03 * real, (cls, projected[cls], real)


def test_the_measured_models_span_1_kb_to_over_100_kb():
    reals = [d["cmsis"]["min_arena"] for _, _, d in MODELS.values()]
    assert min(reals) < 1024 and max(reals) > 100_000 and len(reals) >= 7


def test_a_model_the_planner_does_not_reproduce_gets_the_largest_scratch_added():
    """When re-planning the host's case misses the host's head, the head is the host's
    plus the largest CMSIS-NN scratch buffer, never less than the host's."""
    model, host, _ = MODELS["cnn_rgb"]
    odd = {**host, "head": host["head"] + 16}
    target = arena.TARGETS["cortex-m-cmsis-nn"]
    assert arena._head(odd, target, model) == odd["head"] + 1152
    assert arena._head(host, target, model) == host["head"]
