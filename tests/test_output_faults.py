"""Output faults: the suite proves the harness catches a device that is wrong, not only slow.

The virtual board (real TFLM kernels) sends well-formed RESULT frames whose outputs are,
in a given fraction of records, one quantization step off or stuck at the result sent
before. The harness must see it in agreement.tflm_host and `--min-agreement` must fail
(exit 1: a threshold, not the rig). The C++ device's side is in test_protocol_cpp.py.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from deploykit.errors import BadInput
from deploykit.protocol.messages import DType, TensorSpec
from deploykit.virtual_board.faults import FaultInjector, parse_faults

SAMPLES = 300


def hil(manifest, outdir, faults: str, *extra) -> int:
    url = f"virtual://{manifest.path}?pacing=0&seed=3&faults={faults}"
    return run_cli(["hil", "run", "-m", str(manifest.path), "-p", url, "--limit", str(SAMPLES),
                    "-o", str(outdir), "--quiet", *extra])


def test_output_fault_keys_parse_and_are_checked():
    spec = parse_faults("drop=0.01,off_by_one=0.1,stuck=0.25")
    assert (spec.off_by_one, spec.stuck, spec.drop) == (0.1, 0.25, 0.01)
    for bad in ("off_by_one=1.5", "stuck=x"):
        with pytest.raises(BadInput, match=bad.split("=")[0]):
            parse_faults(bad)


@pytest.mark.parametrize("dtype, value, want", [
    (DType.int8, 5, 6), (DType.int8, 127, 126), (DType.uint8, 255, 254), (DType.int16, -3, -2),
])
def test_off_by_one_moves_one_element_by_one_step(dtype, value, want):
    import numpy as np
    spec = TensorSpec(dtype, (1, 4), 0.1, 0)
    result = np.full(4, value, dtype=np.dtype(dtype.name).newbyteorder("<")).tobytes()
    out = np.frombuffer(FaultInjector("off_by_one=1").outputs.apply(result, (spec,)), dtype=np.dtype(dtype.name))
    assert sorted(out.tolist()) == sorted([want] + [value] * 3)


def test_float_output_off_by_one_is_the_next_float():
    import numpy as np
    spec = TensorSpec(DType.float32, (1, 1), 0.0, 0)
    out = FaultInjector("off_by_one=1").outputs.apply(np.float32(0.5).tobytes(), (spec,))
    assert np.frombuffer(out, np.float32)[0] == np.nextafter(np.float32(0.5), np.float32(1))


def test_stuck_repeats_the_result_sent_before():
    spec = (TensorSpec(DType.int8, (1, 1), 0.1, 0),)
    faults = FaultInjector("stuck=1").outputs
    sent = [faults.apply(bytes([i]), spec) for i in range(5)]
    assert sent == [b"\x00"] * 5 and faults.counts["stuck"] == 4


def test_no_output_fault_changes_nothing():
    spec = (TensorSpec(DType.int8, (1, 3), 0.1, 0),)
    faults = FaultInjector("drop=0.1").outputs
    assert [faults.apply(bytes([i, 1, 2]), spec) for i in range(50)] == [bytes([i, 1, 2]) for i in range(50)]


@pytest.mark.parametrize("faults, rate", [("off_by_one=0.1", 0.1), ("stuck=0.1", 0.1), ("off_by_one=0.3", 0.3)])
def test_harness_sees_a_wrong_device_and_min_agreement_fails(sine_manifest, tmp_path, capsys, faults, rate):
    """Before: the virtual board could only be slow or noisy; every result it sent was right."""
    code = hil(sine_manifest, tmp_path / "r", faults, "--min-agreement", "0.99")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "agreement.tflm_host.exact_fraction" in err and ">= 0.99" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    agreement = report["agreement"]["tflm_host"]
    assert report["samples"] == SAMPLES and report["samples_failed"] == 0  # the link was fine
    assert 1 - 2 * rate < agreement["exact_fraction"] < 1 - rate / 2, agreement
    if faults.startswith("off_by_one"):
        assert agreement["max_abs_steps"] == 1


def test_clean_virtual_board_still_agrees_exactly(sine_manifest, tmp_path, capsys):
    assert hil(sine_manifest, tmp_path / "r", "", "--min-agreement", "0.99") == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
