"""The deploykit wire protocol, pure Python (no I/O). Normative spec: docs/protocol.md.

spec.py is the one source of the protocol's numbers (version, types, codes, dtypes,
sizes); generate.py writes the C header and the docs tables from it. The harness and the
virtual board both use this package; the firmware's C++ core
(firmware_templates/src/dk_protocol.*) implements the same bytes, checked by the shared
test vectors in vectors.json (bytes) and conversations.json (device behaviour).
"""

from deploykit.protocol.framing import (
    FRAME_OVERHEAD,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    FrameError,
    encode_frame,
    wire_size,
)
from deploykit.protocol.messages import (
    Ack,
    Begin,
    ErrorMsg,
    Hello,
    HelloRequest,
    Input,
    Log,
    Nack,
    OpTimes,
    OpTimingRequest,
    Ping,
    Pong,
    ProtocolError,
    Reset,
    ResultBatch,
    ResultPart,
    TensorChunk,
    TensorDumpRequest,
    TensorSpec,
    TimedLoop,
    TimedLoopRequest,
    Unknown,
    decode_message,
    encode_message,
)
from deploykit.protocol.spec import Capability, DType, ErrorCode, MsgType, TimerKind

__all__ = [
    "FRAME_OVERHEAD", "PROTOCOL_VERSION", "Frame", "FrameDecoder", "FrameError", "encode_frame",
    "wire_size", "Ack", "Begin", "DType", "ErrorMsg", "Hello", "HelloRequest", "Input", "Log",
    "Nack", "Ping", "Pong", "ProtocolError", "Reset", "ResultBatch", "ResultPart", "TensorSpec", "TimerKind",
    "Unknown", "OpTimes", "OpTimingRequest", "TensorChunk", "TensorDumpRequest",
    "TimedLoop", "TimedLoopRequest", "Capability", "ErrorCode", "MsgType",
    "decode_message", "encode_message",
]
