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
    """Run x (n, *input_shape[1:], in the input dtype) sample by sample; stack outputs."""
    it = interpreter(model)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.asarray(x)
    if x.dtype != inp["dtype"]:
        from deploykit.errors import BadInput
        raise BadInput(f"inputs are {x.dtype}, the model input is {np.dtype(inp['dtype']).name}; quantize them first")
    results = np.empty((len(x),) + tuple(out["shape"][1:]), dtype=out["dtype"])
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i].reshape(inp["shape"]))
        it.invoke()
        results[i] = it.get_tensor(out["index"]).reshape(results.shape[1:])
    return results
