"""Output records (the bytes of a RESULT per record) back into numbers, per output tensor.

Tensor bytes on the wire are little-endian in HELLO's tensor order.
"""

from __future__ import annotations

import sys
from typing import Literal

import numpy as np

# memoryview.cast codes: native order, so only used on little-endian hosts
_CastCode = Literal["b", "B", "h", "i", "f"]
_CAST: dict[str, _CastCode] = {"int8": "b", "uint8": "B", "int16": "h", "int32": "i", "float32": "f"} \
    if sys.byteorder == "little" else {}


def decode_outputs(specs, outputs: bytes) -> list[np.ndarray]:
    """One array per output tensor, shaped as its spec."""
    arrays, off = [], 0
    for spec in specs:
        dtype = np.dtype(spec.dtype.name).newbyteorder("<")
        arrays.append(np.frombuffer(outputs, dtype=dtype, count=spec.nbytes // dtype.itemsize,
                                    offset=off).reshape(spec.shape))
        off += spec.nbytes
    return arrays


class OutputLists:
    """A fast splitter of output records into flat lists (one per tensor) for results.jsonl."""

    def __init__(self, specs):
        self.layout = [(np.dtype(s.dtype.name).newbyteorder("<"), _CAST.get(s.dtype.name), s.nbytes)
                       for s in specs]

    def __call__(self, outputs: bytes) -> list[list]:
        lists, off = [], 0
        for dtype, code, nbytes in self.layout:
            chunk = outputs[off:off + nbytes]
            lists.append(memoryview(chunk).cast(code).tolist() if code
                         else np.frombuffer(chunk, dtype=dtype).tolist())
            off += nbytes
        return lists
