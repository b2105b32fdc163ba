"""Every frame both ways: the `deploykit.link` logger at DEBUG and `hil run --trace FILE`."""

from __future__ import annotations

import logging
import os
import re

import pytest
from conftest import run_cli

from deploykit.errors import DeviceError
from deploykit.harness.run import run_hil
from deploykit.link.session import DeviceSession, Timeouts


def test_trace_file_and_logger_see_every_frame_both_ways(sine_manifest, tmp_path, caplog):
    trace = tmp_path / "frames.trace"
    url = f"virtual://{sine_manifest.path}?pacing=0"
    with (
        caplog.at_level(logging.DEBUG, logger="deploykit.link"),
        DeviceSession(url, 115200, expected_sha256=sine_manifest.sha256, trace=trace) as dev,
    ):
        results = list(dev.stream(bytes(range(3))))
    assert len(results) == 3
    lines = trace.read_text().splitlines()
    assert lines[0].startswith("# deploykit frame trace: virtual://")
    frames = [re.match(r"\s*(\d+\.\d{6}) (->|<-) (\S+) seq=(\d+) (\d+) B ([0-9a-f]*)$", ln) for ln in lines[1:]]
    assert all(frames), lines
    times = [float(m[1]) for m in frames]
    assert times == sorted(times)
    sent = [m[3] for m in frames if m[2] == "->"]
    got = [m[3] for m in frames if m[2] == "<-"]
    assert sent[0] == "HelloRequest" and "Ping" in sent and "Input" in sent
    assert "HELLO" in got and "PONG" in got and "RESULT" in " ".join(got)
    logged = [r.getMessage() for r in caplog.records if r.name == "deploykit.link"]
    assert len(logged) == len(frames)  # the logger sees the same frames as the file


def test_handshake_give_up_names_the_trace(sine_manifest, tmp_path):
    """A pty nobody answers on: hil run's error names the trace, which holds the requests."""
    trace = tmp_path / "silent.trace"
    master, slave = os.openpty()
    try:
        with pytest.raises(DeviceError, match=f"no HELLO.*every frame is in the trace {re.escape(str(trace))}"):
            run_hil(sine_manifest.path, os.ttyname(slave), outdir=tmp_path / "out",
                    session_options={"trace": trace, "handshake_retries": 2, "timeouts": Timeouts(hello=0.1)})
    finally:
        os.close(master)
        os.close(slave)
    assert trace.read_text().count("-> HelloRequest") == 2


def test_trace_into_a_missing_folder_is_one_line_bad_input(sine_manifest, tmp_path, capsys):
    code, _, err = run_cli(["hil", "run", "-m", sine_manifest.path, "--port", f"virtual://{sine_manifest.path}",
                            "-o", tmp_path / "out", "--quiet", "--trace", tmp_path / "no" / "t.trace"], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot write --trace" in err, err
