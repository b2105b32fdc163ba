"""A RESULT is kept only for records sent in full since the last BEGIN (issue 9, A).

Hostile fake devices on a real pty: the virtual board's engine, changed only in what it
writes. Every stored row must be TFLM-host's output for that sample.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.errors import DeviceError
from deploykit.firmware.boards import load_board
from deploykit.harness.inputs import load_inputs
from deploykit.harness.run import run_hil
from deploykit.link.outputs import OutputLists
from deploykit.link.session import DeviceSession
from deploykit.model.tflm_host import TflmRunner
from deploykit.protocol import Ack, ResultBatch
from deploykit.virtual_board import DeviceEngine, PacedLink, PtyServer, build_firmware


class ForgingEngine(DeviceEngine):
    """Before each real RESULT, a RESULT for first_record + 30 with made-up outputs."""

    def _flush(self, t: float) -> None:
        if self.pending:
            first, n = self.pending[0][0] + 30, len(self.pending)
            fake = tuple(bytes([0x5A]) * self.fw.out_record for _ in range(n))
            self._send(ResultBatch(first, fake, (1,) * n, (1,) * n), t)
        super()._flush(t)


class OnlyForgingEngine(DeviceEngine):
    """ACKs its input, runs nothing real: every RESULT names records it was never sent."""

    def _flush(self, t: float) -> None:
        if self.pending:
            first, n = self.pending[0][0] + 1000, len(self.pending)
            self._send(ResultBatch(first, tuple(o for _, o in self.pending), (1,) * n, (1,) * n), t)
            self.pending = []


def _serve(manifest, engine_cls):
    firmware = build_firmware(manifest, load_board("virtual"))
    server = PtyServer(PacedLink(engine_cls(firmware, timed=False), 115200, paced=False))
    return server, server.start()


def test_forged_results_are_rejected_and_the_genuine_ones_kept(converted_examples, tmp_path):
    manifest = converted_examples["gestures"]
    inputs = load_inputs(manifest)
    runner = TflmRunner(manifest.model_bytes())
    server, port = _serve(manifest, ForgingEngine)
    try:
        report = run_hil(manifest.path, port, outdir=tmp_path / "out", warmup=0,
                         float_reference=False)
    finally:
        server.stop()
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()[1:]]
    assert sorted(r["index"] for r in rows) == list(range(len(inputs)))
    split = OutputLists(_output_specs(manifest))
    for row in rows:
        want = b"".join(runner.invoke_raw([inputs.records([row["index"]])[0].tobytes()]))
        assert row["outputs"] == split(want), f"sample {row['index']} stored a forged result"
    assert report["faults"]["rejected_results"] > 0


# slow: seconds of resends before it gives up; the fast loop keeps the rejection of results for
# records not sent (test_forged_results_are_rejected_and_the_genuine_ones_kept) and the give-up
# diagnosis for a silent device (test_session.py::test_device_that_stops_answering_fails_clearly)
@pytest.mark.slow
def test_a_device_that_only_answers_for_records_it_was_not_sent_is_named_wrong_firmware(sine_manifest):
    server, port = _serve(sine_manifest, OnlyForgingEngine)
    try:
        with DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256, max_retries=3) as dev:
            got = []
            with pytest.raises(DeviceError) as info:
                for r in dev.stream(np.zeros((20, 1), np.uint8)):
                    got.append(r)
            assert dev.faults.rejected_results > 0
    finally:
        server.stop()
    msg = str(info.value)
    assert got == [] and "firmware" in msg and "reset the board" not in msg


def _output_specs(manifest):
    from deploykit.protocol.messages import TensorSpec
    return [TensorSpec.from_manifest(s) for s in manifest["outputs"]]


class SilentAckEngine(DeviceEngine):
    """Sends no ACK for INPUT (only for BEGIN): its RESULTs are the only acknowledgement."""

    def _send(self, msg, t: float) -> None:
        if isinstance(msg, Ack) and not getattr(self, "_answering_begin", False):
            return
        super()._send(msg, t)

    def _on_begin(self, msg, t: float) -> None:
        self._answering_begin = True
        try:
            super()._on_begin(msg, t)
        finally:
            self._answering_begin = False


def test_a_result_acknowledges_its_records(sine_manifest):
    """Every INPUT ACK lost: the RESULTs carry the run, without a single resend."""
    server, port = _serve(sine_manifest, SilentAckEngine)
    x = np.random.default_rng(0).integers(0, 256, size=(300, 1), dtype=np.uint8)
    runner = TflmRunner(sine_manifest.model_bytes())
    try:
        with DeviceSession(port, 115200, expected_sha256=sine_manifest.sha256) as dev:
            results = dev.infer(x)
            faults = dev.faults
    finally:
        server.stop()
    assert [r.outputs for r in results] == [b"".join(runner.invoke_raw([row.tobytes()])) for row in x]
    assert faults.retries == 0 and faults.resyncs == 0
