"""The deploykit wire protocol, pure Python (no I/O). Normative spec: docs/protocol.md.

The harness and the virtual board both use this package; the firmware's C++ core
(firmware_templates/src/dk_protocol.*) implements the same bytes, checked by the shared
test vectors in vectors.json.
"""

from deploykit.protocol.framing import (
    FRAME_OVERHEAD, PROTOCOL_VERSION, Frame, FrameDecoder, FrameError, encode_frame, wire_size,
)
from deploykit.protocol.messages import (
    Ack, Begin, DType, ErrorMsg, Hello, HelloRequest, Input, Log, Nack, Ping, Pong, Reset,
    ResultBatch, TensorSpec, TimerKind, decode_message, encode_message,
)

__all__ = [
    "FRAME_OVERHEAD", "PROTOCOL_VERSION", "Frame", "FrameDecoder", "FrameError", "encode_frame",
    "wire_size", "Ack", "Begin", "DType", "ErrorMsg", "Hello", "HelloRequest", "Input", "Log",
    "Nack", "Ping", "Pong", "Reset", "ResultBatch", "TensorSpec", "TimerKind",
    "decode_message", "encode_message",
]
