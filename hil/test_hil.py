"""The HIL suite: what must hold for a device running a model, board or virtual alike.

Handshake, model hash, tensor specs, outputs against TFLM on the host, latency against
the board's budget, arena against the configured size. Nothing here branches on
"virtual or real": only the device's answers count.
"""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.link.identity import Expected, differences
from deploykit.protocol import PROTOCOL_VERSION
from deploykit.protocol.spec import FIRMWARE_ID_BYTES


@pytest.fixture(scope="session")
def inputs(dk_manifest, request):
    from deploykit.harness.inputs import load_inputs
    return load_inputs(dk_manifest, None, request.config.getoption("hil_samples"))


@pytest.fixture(scope="session")
def device_results(dk_session, inputs):
    """Every test sample run on the device once (one stream, reused by the tests below)."""
    return dk_session.infer(inputs.records(range(len(inputs))))


@pytest.fixture(scope="session")
def host_outputs(dk_manifest, inputs):
    """The same samples through TFLM on the host: the reference the device must match."""
    from deploykit.model.tflm_host import TflmRunner
    runner = TflmRunner(dk_manifest.model_bytes())
    records = inputs.records(range(len(inputs)))
    return [b"".join(runner.invoke_raw([bytes(r)])) for r in records]


def test_handshake_names_protocol_board_and_limits(dk_session, dk_board):
    hello = dk_session.hello
    assert hello.protocol_version == PROTOCOL_VERSION
    assert len(hello.firmware_id) == FIRMWARE_ID_BYTES  # every build (and the virtual board) carries an id
    assert hello.board_id == dk_board.id
    assert hello.cpu_hz == dk_board.clock_mhz * 1_000_000
    assert hello.max_payload > 0 and 0 < hello.rx_window <= dk_board.rx_buffer_bytes


def test_model_hash_matches_the_manifest(dk_session, dk_manifest):
    assert dk_session.hello.model_sha256.hex() == dk_manifest.sha256


def test_tensor_specs_match_the_manifest(dk_session, dk_manifest):
    """Count, dtype, shape, scale (as HELLO's f32) and zero point of every tensor, and the hash."""
    assert differences(dk_session.hello, Expected.of_manifest(dk_manifest)) == []


def test_every_sample_has_a_result(device_results, inputs):
    failures = [r for r in device_results if not hasattr(r, "outputs")]
    assert not failures, f"the device failed {len(failures)} samples: {failures[:3]}"
    assert [r.record for r in device_results] == list(range(len(inputs)))


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Integer tensors: in quantization steps (LSB). Float tensors: relative to |b|'s peak."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff if a.dtype.kind != "f" else diff / max(float(np.max(np.abs(b))), 1e-12) * 1e5


def test_outputs_agree_with_tflm_on_the_host(dk_session, device_results, host_outputs, request):
    """Int8 outputs within --hil-output-tolerance steps (CMSIS-NN may round differently from the
    reference kernels); float outputs within tolerance × 1e-5 relative."""
    tolerance = request.config.getoption("hil_tolerance")
    for result, expected in zip(device_results, host_outputs, strict=True):
        for a, b in zip(dk_session.decode_outputs(result.outputs), dk_session.decode_outputs(expected), strict=True):
            diff = _difference(a, b)
            assert diff <= tolerance, (f"record {result.record}: device output {a.ravel()[:8]} differs from "
                                       f"TFLM on the host {b.ravel()[:8]} by {diff:g} (allowed {tolerance})")


def test_latency_is_within_the_board_budget(dk_session, dk_board, dk_manifest, device_results, request):
    """The slowest inference within --dk-max-latency-us (default: twice the board's cost model)."""
    from deploykit.virtual_board.cost import inference_timing
    budget_us = request.config.getoption("hil_max_latency_us")
    if budget_us is None:
        budget_us = 2 * inference_timing(dk_manifest["ops"], dk_board).micros
    worst_us = max(r.micros for r in device_results)
    assert worst_us <= budget_us, f"slowest inference {worst_us:.1f} µs exceeds the budget {budget_us:.1f} µs"


def test_cycles_and_microseconds_agree(dk_session, device_results):
    hz = dk_session.hello.cpu_hz
    for r in device_results:
        assert abs(r.cycles * 1e6 / hz - r.micros) <= max(1.0, 0.01 * r.micros), r


def test_arena_fits_the_configured_size(dk_session, dk_board):
    hello = dk_session.hello
    assert 0 < hello.arena_used <= hello.arena_configured <= dk_board.ram_bytes


def test_ping_and_reset_then_stream_again(dk_session, inputs, device_results):
    assert dk_session.ping(b"hil") == b"hil"
    hello = dk_session.reset()
    assert hello.model_sha256 == dk_session.hello.model_sha256
    again = dk_session.infer(inputs.records([0]))
    assert again[0].outputs == device_results[0].outputs
