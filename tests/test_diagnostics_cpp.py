"""The C++ core's Device answering the diagnostics requests (OP_TIMING_REQ, TENSOR_DUMP_REQ).

tests/cpp/posix_device.cpp hooks three fake operators into dk::Device (see its header):
their ticks and output bytes are predictable from the record, so every OP_TIMES entry and
every TENSOR_CHUNK byte is checked, as is the refusal of a build without the capability
(ERROR UNKNOWN_TYPE) and of a request about a record that did not run last (ERROR NOT_RUN).
"""

from __future__ import annotations

import pytest
from test_protocol_cpp import BASE_ARGS, device  # noqa: F401  (a fixture)

from deploykit.protocol import Ack, Begin, ErrorCode, ErrorMsg, Input, ResultBatch
from deploykit.protocol.messages import OpTimes, OpTimingRequest, TensorChunk, TensorDumpRequest

RECORD = bytes([0x85])  # one int8 input (BASE_ARGS)
BOTH = ("--capabilities", "3")


def _run(dev, record_index: int = 4) -> None:
    dev.send(Begin(record_index))
    dev.next(Ack)
    dev.send(Input(record_index * len(RECORD), RECORD))
    dev.next(Ack)
    dev.next(ResultBatch)


def test_core_answers_op_timing_of_the_last_record(device):  # noqa: F811 (the fixture)
    dev = device(*BOTH)
    _run(dev)
    dev.send(OpTimingRequest(4))
    got = dev.next(OpTimes)
    assert (got.record, got.first, got.total) == (4, 0, 3)
    assert got.entries == tuple((i, 9 + i, 100 * (i + 1) + RECORD[0]) for i in range(3))


@pytest.mark.parametrize("max_chunk", [0, 40])
def test_core_streams_every_operator_output_in_chunks(device, max_chunk):  # noqa: F811 (the fixture)
    dev = device(*BOTH)
    _run(dev)
    dev.send(TensorDumpRequest(4, max_chunk))
    tensors: dict[int, bytearray] = {}
    while True:
        chunk = dev.next(TensorChunk)
        assert (chunk.record, chunk.n_ops, chunk.n_outputs, chunk.dtype) == (4, 3, 1, 9)
        assert len(chunk.payload()) <= 256  # the device's max_payload
        assert len(chunk.data) <= (max_chunk or 256)
        buf = tensors.setdefault(chunk.op, bytearray(chunk.total))
        buf[chunk.offset:chunk.offset + len(chunk.data)] = chunk.data
        assert chunk.tensor == 10 + chunk.op
        if chunk.last:
            break
    for op in range(3):
        assert bytes(tensors[op]) == bytes((RECORD[0] + op + j) % 256 for j in range(150 * (op + 1)))


def test_core_refuses_a_record_that_did_not_run_last(device):  # noqa: F811 (the fixture)
    dev = device(*BOTH)
    dev.send(OpTimingRequest(0))  # nothing ran since boot
    err = dev.next(ErrorMsg)
    assert (err.code, err.detail) == (ErrorCode.NOT_RUN, 0)
    _run(dev, 4)
    dev.send(TensorDumpRequest(5))
    err = dev.next(ErrorMsg)
    assert (err.code, err.detail) == (ErrorCode.NOT_RUN, 5)


def test_core_without_the_capability_answers_unknown_type(device):  # noqa: F811 (the fixture)
    dev = device("--capabilities", "1")  # OP_TIMING only
    _run(dev)
    dev.send(TensorDumpRequest(4))
    assert dev.next(ErrorMsg).code == ErrorCode.UNKNOWN_TYPE
    dev.send(OpTimingRequest(4))
    assert dev.next(OpTimes).total == 3
