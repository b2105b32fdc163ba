"""TFLite's affine quantization: round half away from zero, clamp, and the inverse."""

from __future__ import annotations

import numpy as np
from hypothesis import given, strategies as st

from deploykit.model.quantization import dequantize, quantize


def test_rounds_half_away_from_zero_not_to_even():
    q = quantize(np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5]), 1.0, 0, np.int8)
    assert q.tolist() == [1, 2, 3, -1, -2, -3]


def test_clamps_to_dtype_range():
    assert quantize(np.array([1e6, -1e6]), 0.1, 3, np.int8).tolist() == [127, -128]
    assert quantize(np.array([1e6, -1e6]), 0.1, 0, np.int16).tolist() == [32767, -32768]


def test_matches_the_converter_on_a_real_input(sine_manifest):
    """The converter's own input tensor: x = 0 maps to the zero point exactly."""
    spec = sine_manifest["inputs"][0]
    assert quantize(np.array([0.0]), spec["scale"], spec["zero_point"], np.int8)[0] == spec["zero_point"]


@given(st.floats(-100, 100), st.floats(1e-3, 10), st.integers(-128, 127))
def test_round_trip_within_half_a_step(x, scale, zp):
    q = quantize(np.array([x]), scale, zp, np.int8)
    back = dequantize(q, scale, zp)[0]
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    if lo <= x <= hi:
        assert abs(back - x) <= scale / 2 + 1e-6 * max(1, abs(x))
    assert back.dtype == np.float32
