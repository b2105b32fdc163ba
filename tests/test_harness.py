"""run_hil against the virtual board: reports, resume after a kill, warm-up, explicit data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from deploykit.harness import run as run_mod
from deploykit.harness.run import Thresholds, run_hil
from deploykit.virtual_board import VirtualBoard

STAT_KEYS = {"mean", "p50", "p90", "p99", "max", "stdev"}
AGREEMENT_KEYS = {"exact_fraction", "max_abs_steps", "mean_abs_steps", "mae", "rmse", "cosine"}


def rows(outdir) -> list[dict]:
    lines = (outdir / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


def test_report_has_every_documented_key(sine_manifest, tmp_path):
    with VirtualBoard(sine_manifest.path) as port:
        report = run_hil(sine_manifest.path, port, limit=200, warmup=2, outdir=tmp_path / "out",
                         thresholds=Thresholds(min_agreement=0.99))
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["schema"] == "deploykit.hil-report/1" and saved["samples"] == 200
    assert saved["simulated"] is True
    for ref in ("tflm_host", "desktop"):
        assert set(saved["agreement"][ref]) >= AGREEMENT_KEYS
    assert saved["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert {"float", "desktop", "device"} <= set(saved["accuracy"])
    assert {"mae", "rmse", "max_error"} <= set(saved["accuracy"]["device"])
    for kind in ("cycles", "us", "round_trip_us"):
        assert set(saved["latency"][kind]) == STAT_KEYS
    assert saved["latency"]["us"]["p50"] > 0
    assert set(saved["arena"]) == {"configured", "used", "estimate", "recommended"}
    assert saved["arena"]["recommended"] > saved["arena"]["used"] > 0
    assert {"samples_per_s", "wire_limit_samples_per_s", "link_efficiency"} <= set(saved["throughput"])
    assert saved["throughput"]["wire_limit_samples_per_s"] == pytest.approx(115200 / 10 / 2)
    assert set(saved["faults"]) == {"retries", "crc_errors", "resyncs", "resets", "reconnects", "unknown_frames",
                                    "rejected_results"}
    assert report.passed and report.paths["html"].is_file()
    assert [r["index"] for r in rows(tmp_path / "out")] == list(range(200))


def test_device_outputs_equal_tflm_host_in_results(converted_examples, tmp_path):
    """Classification (gestures): confusion matrix, top-1 agreement; outputs kept per sample."""
    manifest = converted_examples["gestures"]
    with VirtualBoard(manifest.path, pacing=False) as port:
        report = run_hil(manifest.path, port, limit=40, warmup=0, outdir=tmp_path,
                         float_reference=False)
    assert report["accuracy"]["task"] == "classification"
    device = report["accuracy"]["device"]
    assert np.asarray(device["confusion"]).sum() == 40 and 0 <= device["accuracy"] <= 1
    assert "top1_agreement_with_desktop" in device and report["accuracy"]["float"] is None
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert len(rows(tmp_path)[0]["outputs"][0]) == 4


def test_int8_data_passes_as_is(sine_manifest, tmp_path):
    """Data already in the input dtype is streamed unchanged (no second quantization)."""
    x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    np.savez(tmp_path / "q.npz", x=x)
    with VirtualBoard(sine_manifest.path, pacing=False) as port:
        report = run_hil(sine_manifest.path, port, data=tmp_path / "q.npz", warmup=0,
                         outdir=tmp_path / "o", float_reference=False)
    assert report["samples"] == 256 and report["accuracy"] == {}
    from deploykit.model.tflm_host import TflmRunner
    runner = TflmRunner(sine_manifest.model_bytes())
    got = {r["index"]: r["outputs"][0][0] for r in rows(tmp_path / "o")}
    want = [int(np.frombuffer(runner.invoke_raw([row.tobytes()])[0], np.int8)[0]) for row in x]
    assert [got[i] for i in range(256)] == want


def test_interrupted_run_resumes_without_loss_or_repeat(sine_manifest, tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    real_append = run_mod.ResultsFile.append
    calls = {"n": 0}

    def append_then_interrupt(self, row, flush=True):
        real_append(self, row, flush)
        calls["n"] += 1
        if calls["n"] == 150:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_mod.ResultsFile, "append", append_then_interrupt)
    with VirtualBoard(sine_manifest.path) as port, pytest.raises(KeyboardInterrupt):
        run_hil(sine_manifest.path, port, limit=400, outdir=outdir, float_reference=False)
    assert len(rows(outdir)) == 150 and not (outdir / "report.json").exists()
    monkeypatch.setattr(run_mod.ResultsFile, "append", real_append)
    with VirtualBoard(sine_manifest.path) as port:
        report = run_hil(sine_manifest.path, port, limit=400, outdir=outdir,
                         float_reference=False)
    indices = [r["index"] for r in rows(outdir)]
    assert sorted(indices) == list(range(400)) and len(indices) == 400
    assert report["resumed_samples"] == 150 and report["samples"] == 400
    assert report["throughput"]["measured_samples"] == 250
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0


@pytest.mark.slow
def test_killed_process_resumes(sine_manifest, tmp_path):
    """SIGKILL a CLI run mid-stream (slow 9600-baud board), run it again: every sample once."""
    outdir = tmp_path / "out"
    url = f"virtual://{sine_manifest.path}?baud=9600"
    args = [sys.executable, "-m", "deploykit", "hil", "run", "--manifest", str(sine_manifest.path),
            "--port", url, "-o", str(outdir), "--quiet", "--warmup", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = outdir / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") > 100:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = rows(outdir)
    assert 100 <= len(before) < 1000
    with open(results, "a") as fh:
        fh.write('{"index": 99')  # a torn line, as if killed mid-write
    fast = f"virtual://{sine_manifest.path}?pacing=0"
    report = run_hil(sine_manifest.path, fast, outdir=outdir, warmup=0, float_reference=False)
    indices = [r["index"] for r in rows(outdir)]
    assert sorted(indices) == list(range(1000))
    assert report["resumed_samples"] == len(before)
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0


def test_results_of_other_data_are_refused_and_no_resume_starts_afresh(sine_manifest, tmp_path):
    """Other data into a folder holding a run: refused naming the data; --no-resume replaces it."""
    from deploykit.harness.results import ResumeMismatch
    np.savez(tmp_path / "other.npz", x=np.linspace(0, 1, 20, dtype=np.float32).reshape(-1, 1))
    with VirtualBoard(sine_manifest.path, pacing=False) as port:
        run_hil(sine_manifest.path, port, limit=30, outdir=tmp_path / "o", float_reference=False)
        before = (tmp_path / "o" / "results.jsonl").read_bytes()
        with pytest.raises(ResumeMismatch, match=r"\(data [0-9a-f]{12}… there, [0-9a-f]{12}… now\).*--no-resume"):
            run_hil(sine_manifest.path, port, data=tmp_path / "other.npz", outdir=tmp_path / "o",
                    float_reference=False)
        assert (tmp_path / "o" / "results.jsonl").read_bytes() == before
        report = run_hil(sine_manifest.path, port, data=tmp_path / "other.npz", outdir=tmp_path / "o",
                         float_reference=False, resume=False)
    assert report["resumed_samples"] == 0 and report["samples"] == 20
    assert [r["index"] for r in rows(tmp_path / "o")] == list(range(20))


def test_run_under_all_faults_reports_them(sine_manifest, tmp_path):
    faults = "drop=0.002,corrupt=0.002,dup=0.01,garbage=0.01,reset=120"
    with VirtualBoard(sine_manifest.path, faults=faults, seed=5) as port:
        report = run_hil(sine_manifest.path, port, limit=300, outdir=tmp_path,
                         float_reference=False)
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    assert report["samples"] == 300 and sum(report["faults"].values()) > 0


class FailOn:
    """TFLM on the host, except that records starting with `byte` fail as a bad Invoke would."""

    def __init__(self, runner, byte: int):
        self.runner, self.byte = runner, byte

    def invoke_raw(self, parts):
        if parts[0][0] == self.byte:
            raise RuntimeError("Invoke failed (test)")
        return self.runner.invoke_raw(parts)


def test_failed_inference_is_an_explicit_failure(sine_manifest, tmp_path):
    """ERROR INVOKE_FAILED from the device: one row with an error, no retry loop, reported."""
    from deploykit.firmware.boards import load_board
    from deploykit.model.tflm_host import TflmRunner
    from deploykit.virtual_board import DeviceEngine, PacedLink, PtyServer, build_firmware
    x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    np.savez(tmp_path / "q.npz", x=x)
    runner = FailOn(TflmRunner(sine_manifest.model_bytes()), byte=0x05)
    firmware = build_firmware(sine_manifest, load_board("virtual"), runner=runner)
    server = PtyServer(PacedLink(DeviceEngine(firmware), 115200))
    port = server.start()
    try:
        report = run_hil(sine_manifest.path, port, data=tmp_path / "q.npz", warmup=0,
                         outdir=tmp_path / "o", float_reference=False)
    finally:
        server.stop()
    failed = [r for r in rows(tmp_path / "o") if "error" in r]
    assert [r["index"] for r in failed] == [128 + 5] and "Invoke failed" in failed[0]["error"]
    assert report["samples"] == 255 and report["samples_failed"] == 1
    assert report["failures"][0]["index"] == 133
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0


def test_port_auto_uses_the_found_board_and_its_baud(sine_manifest, tmp_path, monkeypatch):
    """--port auto: the port and board come from deploykit.toolchain.devices (USB VID:PID lookup)."""
    import deploykit.toolchain.devices
    seen = {}
    with VirtualBoard(sine_manifest.path, board="nano33ble_sense", pacing=False) as port:
        monkeypatch.setattr(deploykit.toolchain.devices, "find_board_port",
                            lambda board_id=None: (port, "nano33ble_sense"))
        real = run_mod.DeviceSession

        def spy(url, baud, **kw):
            seen.update(url=url, baud=baud)
            return real(url, baud, **kw)

        monkeypatch.setattr(run_mod, "DeviceSession", spy)
        report = run_hil(sine_manifest.path, "auto", limit=10, outdir=tmp_path,
                         float_reference=False)
    assert seen == {"url": port, "baud": 115200}
    assert report["device"]["board_id"] == "nano33ble_sense" and report["samples"] == 10


def test_larger_limit_resumes_the_smaller_run(sine_manifest, tmp_path):
    with VirtualBoard(sine_manifest.path, pacing=False) as port:
        first = run_hil(sine_manifest.path, port, limit=40, outdir=tmp_path, float_reference=False)
        second = run_hil(sine_manifest.path, port, limit=100, outdir=tmp_path, float_reference=False)
        third = run_hil(sine_manifest.path, port, limit=20, outdir=tmp_path, float_reference=False)
    assert (first["resumed_samples"], second["resumed_samples"], third["resumed_samples"]) == (0, 40, 20)
    assert second["throughput"]["measured_samples"] == 60 and third["throughput"]["measured_samples"] == 0
    assert third["samples"] == 20 and sorted(r["index"] for r in rows(tmp_path)) == list(range(100))


@pytest.mark.slow  # the same refusal for other data, and --no-resume: test_results_of_other_data_are_refused_...
def test_firmware_with_another_arena_does_not_resume(sine_manifest, tmp_path):
    """Same model, data and board, rebuilt with another arena: refused, then afresh with resume=False."""
    from deploykit.harness.results import ResumeMismatch
    with VirtualBoard(sine_manifest.path, pacing=False) as port:
        first = run_hil(sine_manifest.path, port, limit=20, outdir=tmp_path, float_reference=False)
    arena = first["arena"]["configured"] + 4096
    with VirtualBoard(sine_manifest.path, pacing=False, arena_configured=arena) as port:
        configured = first["arena"]["configured"]
        with pytest.raises(ResumeMismatch, match=rf"arena configured {configured} there, {arena} now"):
            run_hil(sine_manifest.path, port, limit=20, outdir=tmp_path, float_reference=False)
        report = run_hil(sine_manifest.path, port, limit=20, outdir=tmp_path,
                         float_reference=False, resume=False)
    assert report["resumed_samples"] == 0 and report["arena"]["configured"] == arena
    assert report["throughput"]["measured_samples"] == 20
