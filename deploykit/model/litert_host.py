"""The quantized model on desktop TFLite (LiteRT, `ai-edge-litert`): the desktop reference.

LiteRT's optimized kernels may differ from TFLM's reference kernels by one int8 step on
some inputs; that difference is what `reference.agreement` measures.
"""

from __future__ import annotations

import numpy as np


def interpreter(model: bytes):
    """LiteRT's built-in kernels without the XNNPACK delegate, which rounds differently
    (up to 3 int8 steps from TFLM on the sine model, against 1 for the built-ins)."""
    from deploykit import extras
    extras.require("ai_edge_litert", "the desktop reference")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=bytes(model), num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def predict(model: bytes, x: np.ndarray) -> np.ndarray:
    """Run x (n, *input_shape[1:], in the input dtype) sample by sample; stack the first output."""
    return predict_all(model, [x])[0]


def predict_all(model: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Run one array per input (in input order and dtype) sample by sample; one stacked
    array per output tensor, in output order."""
    from deploykit.errors import BadInput
    it = interpreter(model)
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(xs) != len(ins):
        raise BadInput(f"model has {len(ins)} inputs, got {len(xs)} arrays")
    xs = [np.asarray(x) for x in xs]
    for x, inp in zip(xs, ins, strict=True):
        if x.dtype != inp["dtype"]:
            raise BadInput(f"inputs are {x.dtype}, the model input is {np.dtype(inp['dtype']).name}; "
                           "quantize them first")
    n = len(xs[0])
    results = [np.empty((n,) + tuple(o["shape"][1:]), dtype=o["dtype"]) for o in outs]
    for i in range(n):
        for x, inp in zip(xs, ins, strict=True):
            it.set_tensor(inp["index"], x[i].reshape(inp["shape"]))
        it.invoke()
        for out, o in zip(results, outs, strict=True):
            out[i] = it.get_tensor(o["index"]).reshape(out.shape[1:])
    return results
