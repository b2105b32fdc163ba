"""The micro-models `deploykit calibrate` times: every kind of operator the cost model prices.

Written directly as .tflite flatbuffers with TFLite's schema (the tflite-micro package's
generated object API), so calibrating needs no TensorFlow and each model has exactly the
shapes the fit needs. Per dtype (int8, float32) there are two models:
- `mac`: chains of CONV_2D (3×3, 1×1, few input channels), DEPTHWISE_CONV_2D (3×3, 5×5)
  and FULLY_CONNECTED at several shapes, so MACs and output elements vary apart and the
  fit can tell cycles per MAC from cycles per output element and the per-operator overhead;
- `elementwise`: ADD, LOGISTIC, MAX/AVERAGE_POOL_2D, CONCATENATION, PAD, RESHAPE, MEAN and
  SOFTMAX, each group at three sizes.
Weights are small seeded values; int8 tensors carry the quantization TFLM's kernels demand
(LOGISTIC and SOFTMAX outputs at 1/256, zero point -128; one scale through pools, PAD and
CONCATENATION). Not covered (left to cost_table.py): int16, BATCH_MATMUL, TRANSPOSE_CONV,
recurrent operators and the "other" group.
"""

from __future__ import annotations

import numpy as np

SCALE = 0.05           # activations' scale (zero point 0) in the int8 models
W_SCALE = 0.01         # weights' scale
OUT_256 = (1 / 256, -128)   # LOGISTIC / SOFTMAX int8 outputs, as TFLM requires
DTYPES = ("int8", "float32")
_TYPES = {"int8": "INT8", "int32": "INT32", "float32": "FLOAT32"}


class MicroNet:
    """A one-subgraph .tflite under construction: tensors, constant buffers, operators."""

    def __init__(self, dtype: str, seed: int = 0):
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
        self.s, self.dtype = s, dtype
        self.rng = np.random.default_rng(seed)
        self.buffers = [s.BufferT()]
        self.codes: list[int] = []
        g = s.SubGraphT()
        g.tensors, g.operators, g.inputs, g.outputs = [], [], [], []
        self.g = g

    # ----- tensors ------------------------------------------------------------------
    def tensor(self, shape, dtype: str | None = None, data: np.ndarray | None = None,
               quant: tuple | None = None, axis: int = 0) -> int:
        """A tensor; int8 ones get (scales, zero points) `quant`, activations SCALE by default."""
        s, dtype = self.s, dtype or self.dtype
        t = s.TensorT()
        t.shape, t.name, t.type = list(shape), f"t{len(self.g.tensors)}".encode(), getattr(s.TensorType, _TYPES[dtype])
        t.buffer = 0
        if data is not None:
            buf = s.BufferT()
            buf.data = np.ascontiguousarray(data).view(np.uint8).ravel().tolist()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if dtype in ("int8", "int32") and (quant is not None or dtype == "int8"):
            scales, zps = quant if quant is not None else ([SCALE], [0])
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = list(map(float, scales)), list(map(int, zps)), axis
            t.quantization = q
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def activation(self, shape, quant: tuple | None = None) -> int:
        return self.tensor(shape, quant=(([quant[0]], [quant[1]]) if quant else None))

    def _weights(self, shape, axis: int, per_channel: bool = True) -> int:
        if self.dtype == "float32":
            return self.tensor(shape, data=self.rng.normal(0, 0.1, shape).astype("<f4"))
        channels = shape[axis] if per_channel else 1
        return self.tensor(shape, data=self.rng.integers(-60, 60, shape, dtype=np.int8),
                           quant=([W_SCALE] * channels, [0] * channels), axis=axis)

    def _bias(self, n: int, per_channel: bool = True) -> int:
        if self.dtype == "float32":
            return self.tensor([n], data=np.zeros(n, "<f4"))
        k = n if per_channel else 1
        return self.tensor([n], "int32", data=np.zeros(n, "<i4"), quant=([SCALE * W_SCALE] * k, [0] * k))

    def const_i32(self, values, shape=None) -> int:
        return self.tensor(shape or [len(values)], "int32", data=np.asarray(values, "<i4"), quant=None)

    # ----- operators ------------------------------------------------------------------
    def op(self, name: str, ins, outs, options=None, options_type: str | None = None) -> int:
        s = self.s
        code = getattr(s.BuiltinOperator, name)
        if code not in self.codes:
            self.codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes.index(code), list(ins), list(outs)
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type or "")
            o.builtinOptions = options
        self.g.operators.append(o)
        return outs[0]

    def conv(self, x: int, shape, cout: int, k: int) -> tuple[int, list[int]]:
        """SAME 3×3 (or k×k) conv, stride 1: (output, its shape)."""
        opt = self.s.Conv2DOptionsT()
        opt.padding, opt.strideW, opt.strideH = self.s.Padding.SAME, 1, 1
        opt.dilationWFactor = opt.dilationHFactor = 1
        out = [1, shape[1], shape[2], cout]
        y = self.activation(out)
        self.op("CONV_2D", [x, self._weights([cout, k, k, shape[3]], 0), self._bias(cout)], [y], opt, "Conv2DOptions")
        return y, out

    def depthwise(self, x: int, shape, k: int) -> tuple[int, list[int]]:
        opt = self.s.DepthwiseConv2DOptionsT()
        opt.padding, opt.strideW, opt.strideH, opt.depthMultiplier = self.s.Padding.SAME, 1, 1, 1
        opt.dilationWFactor = opt.dilationHFactor = 1
        c = shape[3]
        y = self.activation(list(shape))
        self.op("DEPTHWISE_CONV_2D", [x, self._weights([1, k, k, c], 3), self._bias(c)], [y], opt,
                "DepthwiseConv2DOptions")
        return y, list(shape)

    def dense(self, x: int, n_in: int, n_out: int) -> int:
        opt = self.s.FullyConnectedOptionsT()
        y = self.activation([1, n_out])
        # per-tensor weights: some boards' TFLM ports apply one scale to every channel
        w, b = self._weights([n_out, n_in], 0, per_channel=False), self._bias(n_out, per_channel=False)
        return self.op("FULLY_CONNECTED", [x, w, b], [y], opt, "FullyConnectedOptions")

    def pool(self, name: str, x: int, shape, k: int) -> tuple[int, list[int]]:
        opt = self.s.Pool2DOptionsT()
        opt.padding, opt.strideW, opt.strideH, opt.filterWidth, opt.filterHeight = self.s.Padding.VALID, k, k, k, k
        out = [1, shape[1] // k, shape[2] // k, shape[3]]
        y = self.activation(out)
        self.op(name, [x], [y], opt, "Pool2DOptions")
        return y, out

    def reshape(self, x: int, shape, quant: tuple | None = None) -> int:
        opt = self.s.ReshapeOptionsT()
        opt.newShape = list(shape)
        y = self.activation(list(shape), quant)
        return self.op("RESHAPE", [x, self.const_i32(shape)], [y], opt, "ReshapeOptions")

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers
        s = self.s
        self.g.inputs, self.g.outputs = list(inputs), list(outputs)
        m = s.ModelT()
        m.version, m.buffers, m.subgraphs, m.description = 3, self.buffers, [self.g], b"deploykit calibrate"
        m.operatorCodes = []
        for c in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = c, min(c, 127), 1
            m.operatorCodes.append(oc)
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def mac_model(dtype: str) -> bytes:
    """Convolutions, depthwise convolutions and dense layers at several shapes, in one chain."""
    n = MicroNet(dtype, seed=1)
    shape = [1, 12, 12, 2]
    x = n.activation(shape)
    y, shape = n.conv(x, shape, 3, 3)      # few input channels (2): ratio 18
    y, shape = n.conv(y, shape, 8, 3)      # few input channels (3): ratio 27
    y, shape = n.conv(y, shape, 8, 3)      # 3×3, 8 in: ratio 72
    y, shape = n.conv(y, shape, 16, 3)
    y, shape = n.conv(y, shape, 4, 3)      # 3×3, 16 in: ratio 144
    y, shape = n.conv(y, shape, 16, 1)     # 1×1, 4 in
    y, shape = n.conv(y, shape, 8, 1)      # 1×1, 16 in
    y, shape = n.depthwise(y, shape, 3)
    y, shape = n.conv(y, shape, 24, 1)     # 1×1, 8 in
    y, shape = n.depthwise(y, shape, 3)
    y, shape = n.depthwise(y, shape, 5)
    y, shape = n.conv(y, shape, 8, 1)
    y, shape = n.depthwise(y, shape, 5)
    y, shape = n.pool("AVERAGE_POOL_2D", y, shape, 3)   # 4×4×8 = 128
    flat = n.reshape(y, [1, 128])
    h = n.dense(flat, 128, 32)
    h = n.dense(h, 32, 96)
    out = n.dense(h, 96, 8)
    return n.build([x], [out])


def elementwise_model(dtype: str) -> bytes:
    """Every element-wise group at three sizes: a block of them on the input, on it pooled, pooled again."""
    n = MicroNet(dtype, seed=2)
    shape = [1, 16, 16, 8]
    x = n.activation(shape)
    _element_block(n, x, shape)
    half, half_shape = n.pool("MAX_POOL_2D", x, shape, 2)
    _element_block(n, half, half_shape)
    quarter, quarter_shape = n.pool("AVERAGE_POOL_2D", half, half_shape, 2)
    out = _element_block(n, quarter, quarter_shape)   # a small output record
    return n.build([x], [out])


def _element_block(n: MicroNet, x: int, shape) -> int:
    """ADD, LOGISTIC, CONCATENATION, PAD, RESHAPE, MEAN and SOFTMAX on `x`; the SOFTMAX's output."""
    a = n.activation(shape)
    n.op("ADD", [x, x], [a], n.s.AddOptionsT(), "AddOptions")
    lg = n.activation(shape, OUT_256)
    n.op("LOGISTIC", [a], [lg])
    cat_shape = [1, shape[1], shape[2], 2 * shape[3]]
    cat = n.activation(cat_shape, OUT_256)
    opt = n.s.ConcatenationOptionsT()
    opt.axis = 3
    n.op("CONCATENATION", [lg, lg], [cat], opt, "ConcatenationOptions")
    padded = [1, cat_shape[1] + 2, cat_shape[2] + 2, cat_shape[3]]
    pd = n.activation(padded, OUT_256)
    n.op("PAD", [cat, n.const_i32([0, 0, 1, 1, 1, 1, 0, 0], [4, 2])], [pd], n.s.PadOptionsT(), "PadOptions")
    n.reshape(pd, [1, int(np.prod(padded))], OUT_256)
    mean = n.activation([1, 1, 1, shape[3]])
    ropt = n.s.ReducerOptionsT()
    ropt.keepDims = True
    n.op("MEAN", [a, n.const_i32([1, 2])], [mean], ropt, "ReducerOptions")
    sm = n.activation(shape, OUT_256)   # over the channels: int8 SOFTMAX over thousands overflows
    sopt = n.s.SoftmaxOptionsT()
    sopt.beta = 1.0
    return n.op("SOFTMAX", [a], [sm], sopt, "SoftmaxOptions")


MODELS = {"mac": mac_model, "elementwise": elementwise_model}


def micro_models() -> dict[str, bytes]:
    """name -> .tflite bytes of every micro-model, e.g. "int8_mac"."""
    return {f"{dtype}_{kind}": make(dtype) for dtype in DTYPES for kind, make in MODELS.items()}
