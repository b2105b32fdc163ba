"""The latency model of CMSIS-NN boards against instruction counts of real Cortex-M4 builds.

Instructions per Invoke (the fastest of 3 after a warm-up; per operator, a timing hook
around each kernel's invoke) of tflite-micro 90b983c built with its Makefile for
Cortex-M4 (TARGET=cortex_m_qemu, BUILD_TYPE=release, OPTIMIZED_KERNEL_DIR=cmsis_nn with
CMSIS-NN 4ab83cc, arm-none-eabi-gcc 12.2; kernels at the Makefile's -O2 and, as
PlatformIO builds a board's library, at -Os), run under QEMU 7.2 mps2-an386 with -icount
shift=0 (one instruction = one virtual ns; SysTick on the 25 MHz CPU clock: 40
instructions per tick, checked on a 2,000,000-instruction loop), on the models of
tests/fixtures/cortex_m4_measured.json (graphs without weights; random int8 inputs).
A core spends at least one cycle per instruction, so simulated cycles must never be
fewer than these counts, and the issue asks for at most 1.6x.
"""

from __future__ import annotations

import pytest
from test_arena_measured import MODELS

from deploykit.firmware.boards import load_board
from deploykit.virtual_board import cost

# Instructions of one Invoke of the CMSIS-NN build, kernels at -Os (measured as above).
CMSIS_NN_M4_OS_INSTRUCTIONS = {
    "linear": 560, "sine": 3_840, "autoencoder": 577_560, "gestures": 42_400,
    "cnn_small": 2_019_400, "cnn_rgb": 7_702_160, "dscnn": 9_017_440,
    "mobilenet": 15_651_760, "resnet": 36_899_160, "mobilenet96": 35_182_560,
}
# The same, kernels at -O2 (TFLM's Makefile default).
CMSIS_NN_M4_INSTRUCTIONS = {
    "linear": 520, "sine": 3_600, "autoencoder": 432_640, "gestures": 35_400,
    "cnn_small": 1_692_080, "cnn_rgb": 5_686_320, "dscnn": 7_582_160,
    "mobilenet": 13_112_080, "resnet": 27_397_320, "mobilenet96": 29_463_960,
}
# The same models with TFLM's reference kernels (same build otherwise), for the record:
# 8-16 instructions per MAC on conv models at -O2, not 66-92.
REFERENCE_M4_INSTRUCTIONS = {
    "linear": 560, "sine": 5_320, "autoencoder": 1_457_640, "gestures": 99_440,
    "cnn_small": 6_700_040, "cnn_rgb": 23_040_760, "dscnn": 42_167_600,
    "mobilenet": 54_258_320, "resnet": 96_435_480, "mobilenet96": 122_602_160,
}
M4_CMSIS_BOARDS = ("nano33ble_sense", "nano33ble_sense_rev2")


def test_the_pinned_counts_are_the_fixture_s():
    for name, (_, _, device) in MODELS.items():
        assert device["cmsis"]["invoke_instructions"] == CMSIS_NN_M4_INSTRUCTIONS[name]
        assert device["ref"]["invoke_instructions"] == REFERENCE_M4_INSTRUCTIONS[name]
        assert device["cmsis_os"]["invoke_instructions"] == CMSIS_NN_M4_OS_INSTRUCTIONS[name]
        assert sum(device["cmsis"]["op_instructions"]) <= CMSIS_NN_M4_INSTRUCTIONS[name]


@pytest.mark.parametrize("name", CMSIS_NN_M4_INSTRUCTIONS)
@pytest.mark.parametrize("board_id", M4_CMSIS_BOARDS)
@pytest.mark.parametrize("counts", [CMSIS_NN_M4_OS_INSTRUCTIONS, CMSIS_NN_M4_INSTRUCTIONS], ids=["Os", "O2"])
def test_simulated_cycles_are_1_to_1_6_times_the_instructions_of_the_real_build(name, board_id, counts):
    """Before the recalibration: 0.52x (cnn_small) to 2.33x (linear) of the -O2 build."""
    model = MODELS[name][0]
    ratio = cost.model_cycles(model, load_board(board_id)) / counts[name]
    assert 1.0 <= ratio <= 1.6, ratio


@pytest.mark.parametrize("name", CMSIS_NN_M4_INSTRUCTIONS)
def test_every_mac_operator_is_costed_from_its_own_shape(name):
    """Per operator, not only per model: each conv, depthwise and dense layer of 10,000
    instructions or more lands at 1.0-1.6x its own count in the -Os build (a 3x3
    depthwise costs 9.4 instructions per MAC, a pointwise conv 2.1, a 3-channel stem 6)."""
    model, _, device = MODELS[name]
    board = load_board("nano33ble_sense")
    for op, counted in zip(model.operators, device["cmsis_os"]["op_instructions"], strict=True):
        if op.op in cost.MAC_SHAPES and counted >= 10_000:
            assert 1.0 <= cost.op_cycles(op, board) / counted <= 1.6, (op.op, cost.shape_class(op))
