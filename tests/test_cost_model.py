"""The virtual board's latency model: per operator, by dtype, kernel family, shape and loop.

Models are written as .tflite flatbuffers with TFLite's own schema (the tflite-micro
package's generated writer), so each test controls the exact shapes it is about and runs
in milliseconds; deploykit parses them as it parses a converter's output. The ranges
asserted are the issue's measurements (CMSIS-NN 2.2-13, reference 66-92 instructions
per MAC on convolutional int8 models under an instruction-counting Cortex-M4 emulator).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deploykit.firmware.boards import load_board
from deploykit.model.tflite_model import parse
from deploykit.virtual_board import cost

_DT = {"int8": "INT8", "int16": "INT16", "int32": "INT32", "float32": "FLOAT32"}


class Net:
    """A tiny .tflite writer: tensors and operators per subgraph, options where they matter."""

    def __init__(self, dtype: str = "int8"):
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
        self.s, self.dtype = s, dtype
        self.buffers = [s.BufferT()]
        self.codes: list[int] = []
        self.graphs: list = []
        self.subgraph()

    def subgraph(self) -> int:
        g = self.s.SubGraphT()
        g.tensors, g.operators, g.inputs, g.outputs = [], [], [], []
        self.graphs.append(g)
        self.g = g
        return len(self.graphs) - 1

    def tensor(self, shape, dtype: str | None = None, values=None) -> int:
        t = self.s.TensorT()
        t.shape, t.name = list(shape), f"t{len(self.g.tensors)}".encode()
        t.type = getattr(self.s.TensorType, _DT[dtype or self.dtype])
        t.buffer = 0
        if values is not None:
            buf = self.s.BufferT()
            buf.data = np.asarray(values, "<i4").view(np.uint8).tolist()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def op(self, name: str, ins, outs, options=None, options_type: str | None = None) -> None:
        code = getattr(self.s.BuiltinOperator, name)
        if code not in self.codes:
            self.codes.append(code)
        o = self.s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes.index(code), list(ins), list(outs)
        if options is not None:
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.g.operators.append(o)

    def conv(self, x: int, out_shape, kernel, cin: int, depthwise: bool = False) -> int:
        kh, kw = kernel
        cout = out_shape[-1]
        w = self.tensor([1, kh, kw, cout] if depthwise else [cout, kh, kw, cin])
        b = self.tensor([cout], "int32" if self.dtype != "float32" else "float32")
        y = self.tensor(out_shape)
        self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, b], [y])
        return y

    def fc(self, x: int, n_in: int, n_out: int, batch: int = 1) -> int:
        w, b, y = self.tensor([n_out, n_in]), self.tensor([n_out], "int32"), self.tensor([batch, n_out])
        self.op("FULLY_CONNECTED", [x, w, b], [y])
        return y

    def pool(self, x: int, out_shape, window) -> int:
        opt = self.s.Pool2DOptionsT()
        opt.filterHeight, opt.filterWidth, opt.strideH, opt.strideW = *window, *window
        y = self.tensor(out_shape)
        self.op("AVERAGE_POOL_2D", [x], [y], opt, "Pool2DOptions")
        return y

    def build(self) -> bytes:
        import flatbuffers
        m = self.s.ModelT()
        m.version, m.buffers, m.subgraphs = 3, self.buffers, self.graphs
        m.operatorCodes = []
        for c in self.codes:
            oc = self.s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = c, min(c, 127), 1
            m.operatorCodes.append(oc)
        builder = flatbuffers.Builder(4096)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


# ----- models ---------------------------------------------------------------------------

def small_cnn(dtype: str = "int8"):
    """A 32×32 RGB classifier: conv 3×3, depthwise 3×3, pointwise, pool, dense, softmax."""
    n = Net(dtype)
    x = n.tensor([1, 32, 32, 3])
    n.g.inputs = [x]
    y = n.conv(x, [1, 16, 16, 16], (3, 3), 3)
    y = n.conv(y, [1, 16, 16, 16], (3, 3), 16, depthwise=True)
    y = n.conv(y, [1, 16, 16, 32], (1, 1), 16)
    y = n.conv(y, [1, 8, 8, 32], (3, 3), 32)
    y = n.pool(y, [1, 1, 1, 32], (8, 8))
    r = n.tensor([1, 32])
    n.op("RESHAPE", [y], [r])
    y = n.fc(r, 32, 10)
    out = n.tensor([1, 10])
    n.op("SOFTMAX", [y], [out])
    n.g.outputs = [out]
    return parse(n.build())


def ds_cnn_kws():
    """The DS-CNN keyword spotter's shape (MLPerf Tiny): 49×10 MFCC, conv 10×4, 4 DS blocks."""
    n = Net()
    x = n.tensor([1, 49, 10, 1])
    n.g.inputs = [x]
    y = n.conv(x, [1, 25, 5, 64], (10, 4), 1)
    for _ in range(4):
        y = n.conv(y, [1, 25, 5, 64], (3, 3), 64, depthwise=True)
        y = n.conv(y, [1, 25, 5, 64], (1, 1), 64)
    y = n.pool(y, [1, 1, 1, 64], (25, 5))
    r = n.tensor([1, 64])
    n.op("RESHAPE", [y], [r])
    n.g.outputs = [n.fc(r, 64, 12)]
    return parse(n.build())


def resnet8():
    """MLPerf Tiny's ResNet-8 on 32×32×3: conv stem, three residual stages, dense."""
    n = Net()
    x = n.tensor([1, 32, 32, 3])
    n.g.inputs = [x]
    y = n.conv(x, [1, 32, 32, 16], (3, 3), 3)
    for size, ch, cin in ((32, 16, 16), (16, 32, 16), (8, 64, 32)):
        a = n.conv(y, [1, size, size, ch], (3, 3), cin)
        a = n.conv(a, [1, size, size, ch], (3, 3), ch)
        skip = y if cin == ch else n.conv(y, [1, size, size, ch], (1, 1), cin)
        s = n.tensor([1, size, size, ch])
        n.op("ADD", [a, skip], [s])
        y = s
    y = n.pool(y, [1, 1, 1, 64], (8, 8))
    r = n.tensor([1, 64])
    n.op("RESHAPE", [y], [r])
    n.g.outputs = [n.fc(r, 64, 10)]
    return parse(n.build())


def mobilenet_block_96():
    """The head of a person detector (MobileNet v1 0.25, 96×96 grey): stem and 3 DS blocks."""
    n = Net()
    x = n.tensor([1, 96, 96, 1])
    n.g.inputs = [x]
    y = n.conv(x, [1, 48, 48, 8], (3, 3), 1)
    for size, cin, cout in ((48, 8, 16), (24, 16, 32), (24, 32, 32)):
        y = n.conv(y, [1, size, size, cin], (3, 3), cin, depthwise=True)
        y = n.conv(y, [1, size, size, cout], (1, 1), cin)
    n.g.outputs = [y]
    return parse(n.build())


CONV_MODELS = {"ds_cnn_kws": ds_cnn_kws, "resnet8": resnet8, "mobilenet_96": mobilenet_block_96,
               "small_cnn": small_cnn}


def cycles_per_mac(model, board) -> float:
    return cost.model_cycles(model, board) / sum(o.macs for o in model.operators)


# ----- dtype and kernel family ---------------------------------------------------------------

@pytest.mark.parametrize("board_id", ["nano33ble_sense", "pico", "esp32c3_devkitm"])
def test_float32_cnn_costs_many_times_its_int8_version(board_id):
    """No CMSIS-NN/ESP-NN float kernels, and soft float on cores without an FPU: float32
    is over 10× the int8 version (the old model put them within 2 %)."""
    board = load_board(board_id)
    i8, f32 = small_cnn("int8"), small_cnn("float32")
    assert sum(o.macs for o in i8.operators) == sum(o.macs for o in f32.operators)
    assert cost.model_cycles(f32, board) > 10 * cost.model_cycles(i8, board)


def test_no_fpu_makes_float32_dearer_than_with_one():
    m4f = load_board("nano33ble_sense")
    no_fpu = dataclasses.replace(m4f, core="cortex-m4")
    f32 = small_cnn("float32")
    assert cost.model_cycles(f32, no_fpu) > 2 * cost.model_cycles(f32, m4f)


def test_depthwise_3x3_and_1x1_conv_with_equal_macs_cost_differently():
    n = Net()
    x = n.tensor([1, 16, 16, 64])
    dw = n.conv(x, [1, 16, 16, 64], (3, 3), 64, depthwise=True)
    x9 = n.tensor([1, 16, 16, 9])
    pw = n.conv(x9, [1, 16, 16, 64], (1, 1), 9)
    n.g.inputs, n.g.outputs = [x, x9], [dw, pw]
    model = parse(n.build())
    depthwise, pointwise = model.operators
    assert depthwise.macs == pointwise.macs == 16 * 16 * 64 * 9
    for board_id in ("nano33ble_sense", "virtual"):
        board = load_board(board_id)
        assert cost.op_cycles(depthwise, board) > 1.1 * cost.op_cycles(pointwise, board), board_id
    assert cost.shape_class(depthwise) == "depthwise_3x3" and cost.shape_class(pointwise) == "conv_1x1"


# ----- loops and subgraphs ------------------------------------------------------------------

def while_lstm(steps: int = 12, units: int = 16, features: int = 8):
    """An RNN lowered to a WHILE loop as TFLite's converter writes it: the condition
    compares a counter passed in (starting at 0) with a constant bound passed in; the body
    runs the cell (input and recurrent FULLY_CONNECTED, ADD, TANH) and counts."""
    n = Net("float32")
    # main subgraph: counter, bound, state, input step
    counter = n.tensor([], "int32", values=[0])
    bound = n.tensor([], "int32", values=[steps])
    state, x = n.tensor([1, units]), n.tensor([1, features])
    outs = [n.tensor([], "int32"), n.tensor([], "int32"), n.tensor([1, units]), n.tensor([1, features])]
    n.g.inputs, n.g.outputs = [state, x], [outs[2]]
    opt = n.s.WhileOptionsT()
    opt.condSubgraphIndex, opt.bodySubgraphIndex = 1, 2
    n.op("WHILE", [counter, bound, state, x], outs, opt, "WhileOptions")
    # cond: counter < bound
    n.subgraph()
    c_in = [n.tensor([], "int32"), n.tensor([], "int32"), n.tensor([1, units]), n.tensor([1, features])]
    flag = n.tensor([], "int32")
    n.op("LESS", [c_in[0], c_in[1]], [flag])
    n.g.inputs, n.g.outputs = c_in, [flag]
    # body: one cell step
    n.subgraph()
    b_in = [n.tensor([], "int32"), n.tensor([], "int32"), n.tensor([1, units]), n.tensor([1, features])]
    a = n.fc(b_in[3], features, 4 * units)
    r = n.fc(b_in[2], units, 4 * units)
    s = n.tensor([1, 4 * units])
    n.op("ADD", [a, r], [s])
    h = n.tensor([1, units])
    n.op("TANH", [s], [h])
    one, nxt = n.tensor([], "int32", values=[1]), n.tensor([], "int32")
    n.op("ADD", [b_in[0], one], [nxt])
    n.g.inputs, n.g.outputs = b_in, [nxt, b_in[1], h, b_in[3]]
    return parse(n.build())


def test_a_while_loop_costs_its_body_times_its_static_trip_count():
    model = while_lstm(steps=12)
    (loop,) = model.operators
    assert len(model.subgraphs) == 3 and loop.trips == 12
    body = loop.branches["body"]
    board = load_board("nano33ble_sense")
    one_pass = sum(cost.op_cycles(o, board) for o in body)
    assert cost.op_cycles(loop, board) > 12 * one_pass
    assert cost.model_cycles(model, board) > 12 * one_pass
    assert cost.breakdown(model, board)[0]["note"] == "12 trips (static)"
    # the body's ops are read with their own subgraph's tensors
    assert [o.op for o in body] == ["FULLY_CONNECTED", "FULLY_CONNECTED", "ADD", "TANH", "ADD"]
    assert body[0].macs == 8 * 64 and body[1].macs == 16 * 64


def test_a_while_loop_without_a_static_bound_is_counted_once_and_says_so():
    model = while_lstm()
    loop = model.operators[0]
    loop.trips = None
    board = load_board("virtual")
    row = cost.breakdown(model, board)[0]
    assert "not static" in row["note"] and "assumption" in row["note"]
    assert row["cycles"] > sum(cost.op_cycles(o, board) for o in loop.branches["body"])


def test_a_sequence_lstm_counts_every_gate_of_every_step():
    """UNIDIRECTIONAL_SEQUENCE_LSTM: 4 gates × (input + recurrent weights) per step."""
    n = Net()
    steps, units, feats = 10, 8, 3
    x = n.tensor([1, steps, feats])
    ins = [x] + [n.tensor([units, feats]) for _ in range(4)] + [n.tensor([units, units]) for _ in range(4)]
    ins += [-1] * 3 + [n.tensor([units], "int32") for _ in range(4)] + [-1, -1]
    ins += [n.tensor([1, units]), n.tensor([1, units])]
    y = n.tensor([1, steps, units])
    n.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [y])
    n.g.inputs, n.g.outputs = [x], [y]
    (op,) = parse(n.build()).operators
    assert op.macs == steps * 4 * units * (feats + units)
    board = load_board("nano33ble_sense")
    assert cost.op_cycles(op, board) > op.macs * board.cycles_per_mac + steps * units * 100


def test_if_counts_its_costlier_branch_and_call_once_nothing_per_inference():
    n = Net()
    x, flag = n.tensor([1, 64]), n.tensor([1], "int32")
    y, z = n.tensor([1, 64]), n.tensor([1, 64])
    n.g.inputs, n.g.outputs = [flag, x], [y]
    opt = n.s.IfOptionsT()
    opt.thenSubgraphIndex, opt.elseSubgraphIndex = 1, 2
    n.op("IF", [flag, x], [y], opt, "IfOptions")
    once = n.s.CallOnceOptionsT()
    once.initSubgraphIndex = 1
    n.op("CALL_ONCE", [], [], once, "CallOnceOptions")
    n.op("TANH", [x], [z])
    n.subgraph()                       # then: a big dense layer
    a = n.tensor([1, 64])
    n.g.inputs, n.g.outputs = [a], [n.fc(a, 64, 256)]
    n.subgraph()                       # else: a copy
    b, c = n.tensor([1, 64]), n.tensor([1, 64])
    n.op("RESHAPE", [b], [c])
    n.g.inputs, n.g.outputs = [b], [c]
    branch, call_once, _ = parse(n.build()).operators
    board = load_board("virtual")
    dense = cost.op_cycles(branch.branches["then"][0], board)
    assert cost.op_cycles(branch, board) == board.op_overhead_cycles + dense
    assert cost.op_cycles(call_once, board) == board.op_overhead_cycles


# ----- the measurements -----------------------------------------------------------

M4_CMSIS = ("nano33ble_sense", "nano33ble_sense_rev2", "nucleo_l4r5zi")


@pytest.mark.parametrize("name", CONV_MODELS)
def test_cmsis_nn_m4_cycles_per_mac_on_conv_models_fall_in_the_measured_range(name):
    model = CONV_MODELS[name]()
    for board_id in M4_CMSIS:
        board = load_board(board_id)
        assert 2.2 <= cycles_per_mac(model, board) <= 13, (board_id, cycles_per_mac(model, board))


@pytest.mark.parametrize("name", CONV_MODELS)
def test_reference_kernel_cycles_per_mac_on_conv_models_fall_in_the_measured_range(name):
    model = CONV_MODELS[name]()
    board = load_board("virtual")        # a Cortex-M4F running TFLM's reference kernels
    assert 66 <= cycles_per_mac(model, board) <= 92, cycles_per_mac(model, board)


def test_breakdown_sums_to_the_inference_total_and_the_label_says_estimate():
    model, board = resnet8(), load_board("nano33ble_sense")
    rows = cost.breakdown(model, board)
    assert len(rows) == len(model.operators)
    assert sum(r["cycles"] for r in rows) == cost.model_cycles(model, board)
    assert cost.inference_timing(model, board).cycles == cost.model_cycles(model, board)
    assert cost.LABEL == "simulated (estimate)"


@pytest.mark.slow
def test_a_keras_lstm_converted_by_tflite_is_a_while_loop_costed_per_step():
    """TFLite's converter lowers a Keras LSTM (float32) to a WHILE loop: the trip count (12
    steps) is found in its condition and every step's body is paid for; before, the loop
    cost one operator's overhead (~8 µs)."""
    from deploykit.model import tf_backend
    tf, keras = tf_backend.tf(), tf_backend.keras()
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((12, 3), batch_size=1), keras.layers.LSTM(6), keras.layers.Dense(2)])
    model = parse(tf.lite.TFLiteConverter.from_keras_model(net).convert())
    (loop,) = [o for o in model.operators if o.op == "WHILE"]
    assert loop.trips == 12 and len(model.subgraphs) == 3
    board = load_board("nano33ble_sense")
    body = sum(cost.op_cycles(o, board) for o in loop.branches["body"])
    assert cost.model_cycles(model, board) > 12 * body
    assert any(o.op == "FULLY_CONNECTED" and o.macs > 0 for o in loop.branches["body"])
