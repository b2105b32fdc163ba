"""The activation area (arena head) of a TFLM build whose kernels ask for other scratch buffers.

The host measures the head with TFLM's reference kernels. CMSIS-NN kernels request
different scratch buffers (arm_*_get_buffer_size), and TFLM plans scratch buffers like
tensors: each lives only during its operator's Invoke, so it shares memory with
activations that are dead at that point and never adds up across operators. So the head
of another kernel family is not the host head plus a sum of buffers: it is what TFLM's
GreedyMemoryPlanner gives for the same tensors plus that family's scratch buffers. This
module re-runs that planner (tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc
and micro_allocation_info.cc at tflite-micro 90b983c) and gives the CMSIS-NN scratch
sizes from the CMSIS-NN sources TFLM pins (ARM-software/CMSIS-NN 4ab83cc), for a
Cortex-M core with the DSP extension and no MVE built with GCC (Cortex-M4/M7/M33).
"""

from __future__ import annotations

import numpy as np

ALIGN = 16    # MicroArenaBufferAlignment(): every planned buffer is rounded up to it
_ITEMSIZE = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2, "int32": 4,
             "float32": 4, "uint32": 4, "int64": 8, "float64": 8, "complex64": 8}


def _aligned(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


# ----- CMSIS-NN scratch buffers (DSP, no MVE, GCC) ------------------------------------------

def _pad(in_size: int, filt: int, stride: int, dilation: int, out_size: int) -> int:
    """TFLM's ComputePaddingWithOffset (tensorflow/lite/kernels/padding.h): the leading pad."""
    effective = (filt - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - in_size, 0) // 2


def conv_s8_scratch(inp, filt, out, stride=(1, 1), dilation=(1, 1)) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size_dsp for an int8 CONV_2D.

    inp/out are NHWC shapes, filt is [out_c, kh, kw, in_c]. A 1x1 conv with no padding
    takes arm_convolve_1x1_s8_fast (stride 1; its DSP buffer is 0 unless built with Arm
    Compiler 6) or arm_convolve_1x1_s8 (0); every other conv, 1xN included, im2col's two
    columns of int16: 2 * (kh*kw*in_c rounded up to 4) * 2 bytes."""
    _, in_h, in_w, in_c = inp
    _, kh, kw, f_c = filt
    pad_h = _pad(in_h, kh, stride[0], dilation[0], out[1])
    pad_w = _pad(in_w, kw, stride[1], dilation[1], out[2])
    if pad_h == 0 and pad_w == 0 and kh == 1 and kw == 1 and dilation == (1, 1) and in_c == f_c:
        return 0
    cols = kw * kh * in_c
    return 2 * (-(-cols // 4) * 4) * 2


def depthwise_s8_scratch(inp, filt, out, stride=(1, 1), dilation=(1, 1)) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp for an int8 DEPTHWISE_CONV_2D.

    filt is [1, kh, kw, out_c]. Only a depth multiplier of 1 (in_c == out_c), batch 1 and
    no dilation takes arm_depthwise_conv_s8_opt, which needs in_c*kh*kw int16; a 3x3 with
    padding <= 1 takes arm_depthwise_conv_3x3_s8 instead, which needs none."""
    n, in_h, in_w, in_c = inp
    _, kh, kw, _ = filt
    out_c = out[3]
    if not (in_c == out_c and n == 1 and dilation == (1, 1)):
        return 0
    pad_h = _pad(in_h, kh, stride[0], dilation[0], out[1])
    pad_w = _pad(in_w, kw, stride[1], dilation[1], out[2])
    if kh == 3 and kw == 3 and pad_h <= 1 and pad_w <= 1:
        return 0
    return in_c * kw * kh * 2


def avgpool_s8_scratch(out) -> int:
    """arm_avgpool_s8_get_buffer_size_dsp: one int32 per channel."""
    return int(out[3]) * 4


def fully_connected_s8_scratch(out, filt, per_channel: bool) -> int:
    """TFLM's cmsis_nn/fully_connected.cc for int8: an output of more than 2 dimensions
    whose accumulation depth is a multiple of 4 runs as a 1x1 conv and, per tensor,
    fakes per-channel quantization in a scratch of 2 int32 per output channel (the 1x1
    fast conv's own buffer is 0 with GCC). arm_fully_connected_s8 needs none on DSP."""
    if len(out) > 2 and filt[-1] % 4 == 0 and not per_channel:
        return int(out[-1]) * 4 * 2
    return 0


def cmsis_nn_scratch(parsed, op) -> int:
    """Bytes of the scratch buffer CMSIS-NN's kernel for `op` requests (0: none)."""
    if op.dtype != "int8" or len(op.inputs) < 1 or not op.outputs:
        return 0
    t = parsed.tensors
    inp, out = t[op.inputs[0]].shape, t[op.outputs[0]].shape
    if op.op == "AVERAGE_POOL_2D":
        return avgpool_s8_scratch(out) if len(out) == 4 else 0
    if len(op.inputs) < 2 or op.inputs[1] < 0 or t[op.inputs[1]].dtype != "int8":
        return 0
    filt = t[op.inputs[1]].shape
    if op.op == "CONV_2D" and len(inp) == len(filt) == len(out) == 4:
        return conv_s8_scratch(inp, filt, out, op.stride, op.dilation)
    if op.op == "DEPTHWISE_CONV_2D" and len(inp) == len(filt) == len(out) == 4:
        return depthwise_s8_scratch(inp, filt, out, op.stride, op.dilation)
    if op.op == "FULLY_CONNECTED" and filt:
        return fully_connected_s8_scratch(out, filt, len(t[op.inputs[1]].scales) > 1)
    return 0


# ----- TFLM's memory plan ------------------------------------------------------------------

def _tensor_bytes(tensor) -> int:
    n = int(np.prod([max(int(d), 1) for d in tensor.shape])) if tensor.shape else 1
    return n * _ITEMSIZE.get(tensor.dtype, 8)


def buffers(parsed, scratch: list[tuple[int, int]]) -> list[tuple[int, int, int]] | None:
    """[(aligned size, first use, last use)] in TFLM's order (tensors by index, then the
    scratch requests [(operator index, bytes)]), as micro_allocation_info.cc marks their
    lifetimes. None for a model with more than one subgraph (not modelled)."""
    if len(parsed.subgraphs) > 1:
        return None
    life: dict[int, list[int]] = {}

    def mark(i: int, scope: int, first: bool) -> None:
        span = life.setdefault(i, [scope, scope])
        if first and span[0] > scope:
            span[0] = scope
        span[1] = scope

    for i in parsed.input_indices:
        mark(i, 0, True)
    for scope, op in enumerate(parsed.operators, start=1):
        for i in op.outputs:
            if i >= 0 and i not in life:
                life[i] = [scope, scope]
        for i in op.inputs:
            if i >= 0:
                life.setdefault(i, [-1, scope])[1] = scope
        for i in op.outputs:
            if i >= 0:
                life[i][1] = scope
    end = len(parsed.operators)
    for i in parsed.output_indices:
        life.setdefault(i, [end, end])[1] = end
    out = []
    for i, tensor in enumerate(parsed.tensors):
        size = _tensor_bytes(tensor)
        if tensor.constant or tensor.variable or size == 0 or i not in life or life[i][0] < 0:
            continue
        out.append((_aligned(size), life[i][0], life[i][1]))
    out += [(_aligned(b), k + 1, k + 1) for k, b in scratch if b > 0]
    return out


def greedy_plan(bufs: list[tuple[int, int, int]]) -> int:
    """Size of TFLM's GreedyMemoryPlanner's plan for `bufs` (all planned online): the
    buffers in reverse order, stably sorted by size, largest first; each at the lowest
    offset that overlaps no placed buffer alive at the same time."""
    order = sorted(range(len(bufs))[::-1], key=lambda k: -bufs[k][0])
    placed: list[tuple[int, int, int, int]] = []   # (offset, size, first, last), by offset
    for k in order:
        size, first, last = bufs[k]
        offset = 0
        for p_off, p_size, p_first, p_last in placed:
            if p_first > last or first > p_last:
                continue
            if p_off - offset >= size:
                break
            offset = max(offset, p_off + p_size)
        placed.append((offset, size, first, last))
        placed.sort(key=lambda e: e[0])
    return max((o + s for o, s, _, _ in placed), default=0)


def head(parsed, scratch: list[tuple[int, int]]) -> int | None:
    """The planned head for `parsed` with `scratch` [(operator index, bytes)]; None when
    the model is not modelled (several subgraphs)."""
    bufs = buffers(parsed, scratch)
    return None if bufs is None else greedy_plan(bufs)


def cmsis_nn_requests(parsed) -> list[tuple[int, int]]:
    """[(operator index, bytes)] of every CMSIS-NN scratch request of the main subgraph."""
    return [(k, b) for k, op in enumerate(parsed.operators) if (b := cmsis_nn_scratch(parsed, op))]
