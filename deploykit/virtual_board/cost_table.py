"""The latency model's coefficients, as data: where each figure comes from is said beside it.

Units are cycles of a Cortex-M4 (the reference core); other cores scale the per-element
figures by CORES[core]["speed"]. The per-MAC figure of a board's int8 kernels is the board
file's `cycles_per_mac` (boards/*.toml, per board, so a calibration can set it); this table
gives how an operator's shape and kind move away from that figure (MAC_FACTOR), what
float32 and int16 cost (they run other kernels), and what every output element costs
beyond its MACs (requantisation, activation, writes).

Sources, named in the comments as:
  [issue]    issue 12: seven int8 models (keyword spotting, person detection, ResNet,
             autoencoder, small CNNs) built from the rendered firmware with upstream TFLM
             for a Cortex-M4, counted under an instruction-counting emulator: CMSIS-NN
             kernels 2.2-13 instructions per MAC, reference kernels 66-92, on conv models.
  [cmsis]    CMSIS-NN documentation and kernel structure (arm_convolve_1x1_s8_fast,
             arm_convolve_s8 = im2col + arm_nn_mat_mult_kernel_s8_s16 with SMLAD two MACs
             per instruction, arm_depthwise_conv_3x3_s8, arm_fully_connected_s8).
  [esp-nn]   ESP-NN README (espressif/esp-nn): optimised int8 kernels for the ESP32-S3
             (SIMD) and ESP32 (plain), several times faster than the ANSI-C reference.
  [measured] instructions counted under QEMU 7.2 mps2-an386 (a Cortex-M4) with -icount
             shift=0, per operator (a timing hook around each kernel's Invoke, 40-instruction
             resolution), of TFLM 90b983c built with its Makefile (cortex_m_qemu, cortex-m4,
             BUILD_TYPE=release, OPTIMIZED_KERNEL_DIR=cmsis_nn, CMSIS-NN 4ab83cc, gcc 12.2)
             with the kernels at -Os, as PlatformIO builds a board's library (the Makefile's
             -O2 runs 7-35 % fewer instructions): ten int8 models (tests/fixtures/
             cortex_m4_measured.json, named beside each figure), fitted as instructions =
             a x MACs + b x outputs + 200, then times CPI_M4. The builds are outside the
             repository.
  [estimate] an engineering estimate, not measured: every figure so labelled makes the
             report say "simulated (estimate)".
Nothing here is measured on a board by deploykit itself; `deploykit calibrate` is meant to
replace these with fitted figures.
"""

from __future__ import annotations

ESTIMATE = True   # some coefficient below is an estimate: reports say "simulated (estimate)"

# Kernel families: TFLM's reference kernels, CMSIS-NN (Arm; portable C paths where the core
# has no DSP extension), ESP-NN (Espressif). Derived from a board's arena class unless the
# board file names `kernels`.
FAMILY_OF_ARENA_CLASS = {
    "cortex-m-reference": "reference",
    "cortex-m-cmsis-nn": "cmsis-nn",
    "esp32-esp-nn": "esp-nn",
}

# Cores: SIMD/DSP (two 16-bit MACs per instruction), a single-precision FPU, and a speed
# factor for non-MAC work relative to the Cortex-M4 (lower is faster). [estimate]
CORES = {
    "cortex-m4f": {"simd": True, "fpu": True, "speed": 1.0},      # reference core
    "cortex-m4": {"simd": True, "fpu": False, "speed": 1.0},
    "cortex-m7": {"simd": True, "fpu": True, "speed": 0.6},       # dual issue, caches [estimate]
    "cortex-m33": {"simd": True, "fpu": True, "speed": 0.95},     # [estimate]
    "cortex-m0plus": {"simd": False, "fpu": False, "speed": 1.4},  # 2-cycle loads, no IT [estimate]
    "xtensa-lx6": {"simd": False, "fpu": True, "speed": 1.0},     # single-precision FPU [estimate]
    "xtensa-lx7": {"simd": True, "fpu": True, "speed": 0.9},      # S3 vector ext. (ESP-NN only) [estimate]
    "riscv-rv32imc": {"simd": False, "fpu": False, "speed": 1.1},  # no F extension [estimate]
}
UNKNOWN_CORE = {"simd": False, "fpu": False, "speed": 1.0}        # [estimate] a core not listed

# Cycles per instruction of TFLM's int8 kernels on a Cortex-M4 with zero-wait-state memory:
# an emulator counts instructions, a core spends 1 cycle on most, 2 on a load not
# pipelined behind another, 2-4 on a taken branch. [estimate] 1.1 (kept low so that the
# -O2 build's counts, up to 1.35x fewer, stay within 1.6x); every [measured] figure below
# is instructions x CPI_M4, so a simulated CMSIS-NN inference lands at 1.0-1.6x the
# instruction count of either build (tests/test_cost_model_measured.py).
CPI_M4 = 1.1

# How an int8 operator's cycles per MAC compare with the board's `cycles_per_mac` (which
# is its kernels' figure for a plain conv). Keys: (family, shape class).
MAC_FACTOR = {
    # Reference kernels: every MAC recomputes 4-D offsets and checks padding bounds, so a
    # 1x1 conv costs what a 3x3 does per MAC [issue: 66-92 instructions/MAC on conv models].
    ("reference", "conv"): 1.0,
    ("reference", "conv_1x1"): 1.0,
    ("reference", "conv_few_channels"): 1.0,
    ("reference", "depthwise_3x3"): 1.15,   # [estimate] one more offset per MAC
    ("reference", "depthwise"): 1.15,       # [estimate]
    # Reference FULLY_CONNECTED is a plain dot product: ~8 instructions per MAC. [estimate]
    ("reference", "fully_connected"): 0.12,
    ("reference", "batch_matmul"): 0.15,    # [estimate]
    ("reference", "transpose_conv"): 1.1,   # [estimate]
    # CMSIS-NN: the 1x1 fast path runs the matrix kernel straight on the input [cmsis];
    # the board's cycles_per_mac is this shape's figure (1.55 instructions/MAC [measured:
    # mobilenet, mobilenet96, dscnn pointwise convs]).
    ("cmsis-nn", "conv_1x1"): 1.0,
    # General conv: im2col into int16 then the same kernel: 2.37 instructions/MAC and
    # PER_OUTPUT_SHAPE [measured: cnn_rgb, resnet 3x3 convs on 16-32 channels].
    ("cmsis-nn", "conv"): 1.53,
    # Input channels < 4 (a first layer on mono/RGB): 1.11 instructions/MAC, the im2col
    # copy per output dominates: PER_OUTPUT_SHAPE [measured: cnn_small, gestures,
    # cnn_rgb, dscnn, mobilenet stems].
    ("cmsis-nn", "conv_few_channels"): 0.72,
    # Depthwise 3x3 (arm_depthwise_conv_3x3_s8): 85-94 instructions per output of 9 MACs,
    # 4.1/MAC beyond the per-output figure [measured: mobilenet, mobilenet96, dscnn,
    # cnn_small]; other windows take arm_depthwise_conv_s8_opt [estimate: 20 % more].
    ("cmsis-nn", "depthwise_3x3"): 2.65,
    ("cmsis-nn", "depthwise"): 3.1,
    # arm_fully_connected_s8: 2.66 instructions/MAC [measured: autoencoder, sine, cnn_small].
    ("cmsis-nn", "fully_connected"): 1.71,
    ("cmsis-nn", "batch_matmul"): 1.3,      # [estimate]
    ("cmsis-nn", "transpose_conv"): 1.6,    # [estimate]
}
for _shape in ("conv", "conv_1x1", "conv_few_channels", "depthwise_3x3", "depthwise",
               "fully_connected", "batch_matmul", "transpose_conv"):
    MAC_FACTOR[("esp-nn", _shape)] = MAC_FACTOR[("cmsis-nn", _shape)]   # [esp-nn, estimate]
MAC_FACTOR_RECURRENT = 1.2   # LSTM/RNN gate matmuls: FULLY_CONNECTED-like with state copies [estimate]

# CMSIS-NN without the DSP extension (Cortex-M0+, RISC-V, Xtensa LX6): its portable C paths
# lose the 2-MACs-per-instruction SMLAD; a board's cycles_per_mac already says so, the shape
# factors above still hold. [cmsis]

# int16 activations (16x8): CMSIS-NN's s16 kernels do half the MACs per instruction. [cmsis, estimate]
INT16_FACTOR = {"reference": 1.05, "cmsis-nn": 2.0, "esp-nn": 2.0}

# float32: no CMSIS-NN or ESP-NN float kernels; TFLM runs its reference float kernels
# everywhere. Cycles per MAC on a core with an FPU, by shape class. The conv figure is the
# reference int8 one's index arithmetic with a VMLA in place of the integer MAC
# [issue: 66-92 for reference conv; estimate].
FLOAT_CPM = {"conv": 65.0, "conv_1x1": 65.0, "conv_few_channels": 65.0, "depthwise_3x3": 75.0,
             "depthwise": 75.0, "fully_connected": 6.0, "batch_matmul": 8.0,
             "transpose_conv": 70.0, "recurrent": 7.0}
# Without an FPU every multiply-add goes through libgcc's soft float (__aeabi_fmul and
# __aeabi_fadd, ~40-50 cycles each on an M0+). [estimate]
SOFT_FLOAT_CPM = 90.0
SOFT_FLOAT_ELEMENT_FACTOR = 8.0   # element-wise float work without an FPU [estimate]

# Cycles per output element beyond its MACs: requantisation (a 64-bit multiply by the
# quantized multiplier, shift, offset, clamp) and the write. [estimate; TFLM's
# MultiplyByQuantizedMultiplier in C is ~30-40 instructions, CMSIS-NN's arm_nn_requantize
# ~10 with SMULL]
# CMSIS-NN: 49 instructions per output of a conv (requantisation, the output loop)
# [measured: pointwise convs of mobilenet/mobilenet96/dscnn, x CPI_M4].
PER_OUTPUT = {"reference": 40.0, "cmsis-nn": 54.0, "esp-nn": 54.0}
# Shapes whose per-output work differs from their family's PER_OUTPUT (cycles per output).
PER_OUTPUT_SHAPE = {
    # a conv on 1-3 input channels: 137 instructions per output, the im2col of a small
    # patch and the requantisation [measured: cnn_small, gestures, mobilenet, dscnn at
    # 9-40 MACs per output, x CPI_M4]
    ("cmsis-nn", "conv_few_channels"): 150.0,
    ("esp-nn", "conv_few_channels"): 150.0,          # [estimate: as CMSIS-NN]
    # a general conv: 120 instructions per output [measured: cnn_rgb, resnet, x CPI_M4]
    ("cmsis-nn", "conv"): 132.0,
    ("esp-nn", "conv"): 132.0,                       # [estimate: as CMSIS-NN]
    # arm_fully_connected_s8: 65 instructions per output [measured: autoencoder
    # 128 vs 640 outputs at 81,920 MACs, x CPI_M4]
    ("cmsis-nn", "fully_connected"): 71.0,
    ("esp-nn", "fully_connected"): 71.0,             # [estimate: as CMSIS-NN]
}
PER_OUTPUT_FLOAT = 8.0        # activation clamp and the store [estimate]
# gates' sigmoid/tanh and products per cell per step [estimate]
PER_CELL_STEP_RECURRENT = {"int8": 160.0, "int16": 160.0, "float32": 120.0}

# Element-wise and data-movement operators: cycles per output element (pooling: per
# window element) by (group, family) for integer types; float32 under "float".
OP_GROUP = {
    "ADD": "requant", "SUB": "requant", "MUL": "requant", "SQUARED_DIFFERENCE": "requant",
    "QUANTIZE": "requant", "DEQUANTIZE": "requant", "MINIMUM": "move", "MAXIMUM": "move",
    "LOGISTIC": "activation", "TANH": "activation", "RELU": "activation", "RELU6": "activation",
    "RELU_N1_TO_1": "activation", "HARD_SWISH": "activation", "LEAKY_RELU": "activation",
    "PRELU": "activation", "ELU": "activation", "GELU": "activation", "EXP": "activation",
    "SOFTMAX": "softmax", "LOG_SOFTMAX": "softmax",
    "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool", "L2_POOL_2D": "pool",
    "MEAN": "reduce", "SUM": "reduce", "REDUCE_MAX": "reduce", "REDUCE_MIN": "reduce",
    "REDUCE_PROD": "reduce",
    "RESHAPE": "copy", "SQUEEZE": "copy", "EXPAND_DIMS": "copy", "SHAPE": "copy",
    "CONCATENATION": "move", "PACK": "move", "UNPACK": "move", "SPLIT": "move",
    "SPLIT_V": "move", "STRIDED_SLICE": "move", "SLICE": "move", "GATHER": "move",
    "TRANSPOSE": "move", "PAD": "move", "PADV2": "move", "TILE": "move", "FILL": "move",
    "ZEROS_LIKE": "move", "BROADCAST_TO": "move", "RESIZE_NEAREST_NEIGHBOR": "move",
    "RESIZE_BILINEAR": "requant", "ARG_MAX": "reduce", "ARG_MIN": "reduce",
}
PER_ELEMENT = {   # [estimate] unless said
    # ADD: arm_elementwise_add_s8 79 instructions per element [measured: resnet, x CPI_M4]
    "requant": {"reference": 25.0, "cmsis-nn": 87.0, "esp-nn": 87.0, "float": 6.0},
    "activation": {"reference": 15.0, "cmsis-nn": 10.0, "esp-nn": 10.0, "float": 60.0},  # float: expf/tanhf
    # SOFTMAX int8 on rows of 2-12: 470 instructions per element (arm_softmax_s8, -Os; 520
    # at -O2), 470 in the reference kernel (-O2) [measured: all ten models, x CPI_M4]
    "softmax": {"reference": 520.0, "cmsis-nn": 520.0, "esp-nn": 520.0, "float": 120.0},
    # per window element: arm_max_pool_s8 11.7 instructions, arm_avgpool_s8 14.4 [measured:
    # cnn_small, cnn_rgb, gestures, dscnn, x CPI_M4: the larger]
    "pool": {"reference": 12.0, "cmsis-nn": 16.0, "esp-nn": 16.0, "float": 8.0},
    # per input element: MEAN int8 runs TFLM's reference kernel in every build, 169
    # instructions per input element [measured: mobilenet, resnet, cnn_rgb, x CPI_M4]
    "reduce": {"reference": 186.0, "cmsis-nn": 186.0, "esp-nn": 186.0, "float": 6.0},
    "copy": {"reference": 0.25, "cmsis-nn": 0.25, "esp-nn": 0.25, "float": 0.25},     # memcpy, per element
    "move": {"reference": 4.0, "cmsis-nn": 4.0, "esp-nn": 4.0, "float": 4.0},
    "other": {"reference": 10.0, "cmsis-nn": 10.0, "esp-nn": 10.0, "float": 12.0},
}
FLOAT_ARITHMETIC_GROUPS = ("requant", "activation", "softmax", "pool", "reduce", "other")

# Control flow. A WHILE costs its condition and body per trip, plus one last condition.
# Where the trip count is not static, the loop is counted DEFAULT_WHILE_TRIPS times and
# the breakdown says so. IF counts its costlier branch; CALL_ONCE runs its subgraph at the
# first Invoke only, so a steady-state inference pays only the op's overhead. [estimate]
DEFAULT_WHILE_TRIPS = 1
CONTROL_FLOW = ("WHILE", "IF", "CALL_ONCE")
