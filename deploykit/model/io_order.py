"""The order and the friendly names of a .tflite's input and output tensors.

TensorFlow's converter lists a model's inputs (and outputs) in the order of its signature's
sorted keys, not in the Keras model's order: a model built as Model([vec, patch], [cls, reg])
converts to inputs [patch, vec] and outputs [reg, cls]. The signature (SignatureDef) still
maps each Keras name (inputs) and `output_<k>` (outputs, k in Keras order) to its tensor, so
`in_source_order` puts the subgraph's input and output lists back in the Keras order (a
model returning a dict: the order it returns its keys in), in place (same indices,
permuted: every other byte of the file stays as it was).
`signature_names` gives each input tensor its signature key ("vec" for the tensor
"serving_default_vec:0"), which data files may use as the array's name.
"""

from __future__ import annotations

import re
import struct

from deploykit.model import tflite_model

_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 6, 8   # SubGraph field offsets in the TFLite schema
_OUTPUT_KEY = re.compile(r"output_(\d+)$")


def _signature(model: bytes) -> tuple[dict[str, int], dict[str, int]] | None:
    """({input key: tensor}, {output key: tensor}) of the main subgraph's signature, or None."""
    root = tflite_model._schema().Model.GetRootAsModel(model, 0)
    for i in range(root.SignatureDefsLength()):
        sig = root.SignatureDefs(i)
        if sig.SubgraphIndex() != 0:
            continue
        ins = {_text(sig.Inputs(j).Name()): int(sig.Inputs(j).TensorIndex()) for j in range(sig.InputsLength())}
        outs = {_text(sig.Outputs(j).Name()): int(sig.Outputs(j).TensorIndex()) for j in range(sig.OutputsLength())}
        return ins, outs
    return None


def _text(raw) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


def signature_names(model: bytes) -> dict[int, str]:
    """{input tensor index: its signature key}; {} for a model without a signature."""
    found = _signature(model)
    return {t: key for key, t in found[0].items()} if found else {}


def in_source_order(model: bytes, input_names: list[str], output_keys: list[str] | None = None) -> bytes:
    """The model with its subgraph inputs in the order of `input_names` (the source model's
    input names, the signature's input keys) and its outputs in `output_<k>` order, or in
    the order of `output_keys` (a model returning a dict: the signature's output keys).
    Either list is left as it is when the signature does not name every tensor in it."""
    parsed = tflite_model.parse(model)
    found = _signature(model)
    if found is None:
        return model
    ins, outs = found
    want_in = [ins.get(name) for name in input_names]
    want_out = [outs.get(key) for key in output_keys] if output_keys else _numbered(outs)
    data = bytearray(model)
    for field, want, have in ((_SUBGRAPH_INPUTS, want_in, parsed.input_indices),
                              (_SUBGRAPH_OUTPUTS, want_out, parsed.output_indices)):
        given = [int(i) for i in want if i is not None]
        if len(given) == len(want) and sorted(given) == sorted(have):
            _write_vector(data, field, given)
    return bytes(data)


def _numbered(outs: dict[str, int]) -> list[int | None]:
    """The tensors of keys output_0, output_1, ... by their number."""
    keyed = {int(m[1]): t for key, t in outs.items() if (m := _OUTPUT_KEY.match(key))}
    return [t for _, t in sorted(keyed.items())]


def _write_vector(data: bytearray, field: int, values: list[int]) -> None:
    """Overwrite subgraph 0's int32 vector `field` with `values` (a permutation: same length)."""
    sub = tflite_model._schema().Model.GetRootAsModel(bytes(data), 0).Subgraphs(0)
    o = sub._tab.Offset(field)
    start, length = sub._tab.Vector(o), sub._tab.VectorLen(o)
    assert length == len(values), "a permutation keeps the vector's length"
    data[start:start + 4 * length] = struct.pack(f"<{length}i", *values)
