"""results.jsonl and the output folder: resume only the same run, locks, links, full disks.

Destructive cases (links, replaced files) use only decoy files under tmp_path.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from deploykit.errors import BadInput, DiskError
from deploykit.harness.outdir import LOCK_NAME, OutdirBusy, locked_outdir
from deploykit.harness.results import ResultsFile, ResumeMismatch, run_header

NANO = SimpleNamespace(board_id="nano33ble_sense", arena_configured=2048, firmware_id=b"\x01" * 16)


def header(**device) -> dict:
    hello = SimpleNamespace(**{**vars(NANO), **device})
    return run_header("ab" * 32, "cd" * 32, hello)


def write_run(path, head: dict, indices) -> None:
    with ResultsFile(path, head, 100) as results:
        for i in indices:
            results.append({"index": i, "outputs": [[i]], "cycles": 10, "us": 1, "round_trip_us": 2.0})


def test_another_device_is_refused_naming_each_difference(tmp_path):
    path = tmp_path / "results.jsonl"
    write_run(path, header(), range(30))
    before = path.read_bytes()
    other = header(board_id="esp32dev", arena_configured=4096, firmware_id=b"\x02" * 16)
    with pytest.raises(ResumeMismatch) as info:
        ResultsFile(path, other, 100).open()
    message = str(info.value)
    assert "board 'nano33ble_sense' there, 'esp32dev' now" in message
    assert "arena configured 2048 there, 4096 now" in message
    assert "firmware id 010101010101… there, 020202020202… now" in message
    assert "model" not in message and "--no-resume" in message and "\n" not in message
    assert path.read_bytes() == before
    with ResultsFile(path, other, 100, resume=False) as fresh:  # --no-resume: afresh
        assert fresh.resumed == 0 and not fresh.done.any()
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["board_id"] == "esp32dev"


def test_firmware_id_alone_decides(tmp_path):
    """Same board and arena, another firmware build (old firmware announces none): refused."""
    path = tmp_path / "results.jsonl"
    write_run(path, header(firmware_id=b""), range(5))
    with pytest.raises(ResumeMismatch, match=r"\(firmware id none there, 010101010101… now\)"):
        ResultsFile(path, header(), 100).open()


def test_same_run_resumes_each_row_once_and_cuts_a_torn_line(tmp_path):
    path = tmp_path / "results.jsonl"
    write_run(path, header(), [0, 1, 2, 5])
    with open(path, "a") as fh:
        fh.write('{"index":1,"outputs":[[99]]}\n{"index":150,"outputs":[[0]]}\n{"index": 7')  # dup, out of range, torn
    seen = []
    with ResultsFile(path, header(), 100, on_row=seen.append) as results:
        assert results.resumed == 4 and results.earlier["started_at"].endswith("Z")
        assert [r["index"] for r in seen] == [0, 1, 2, 5] and seen[1]["outputs"] == [[1]]
        results.append({"index": 5, "outputs": [[0]]})   # a sample already there: first one wins
        results.append({"index": 3, "outputs": [[3]]})
    assert [r["index"] for r in seen] == [0, 1, 2, 5, 3]
    text = path.read_text()
    assert text.endswith('{"index":3,"outputs":[[3]]}\n') and '"index": 7' not in text
    assert [r["index"] for r in ResultsFile(path, header(), 100).rows()] == [0, 1, 2, 5, 3]


def test_file_of_an_older_deploykit_is_not_resumed(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"schema": "deploykit.hil-results/1", "model_sha256": "ab" * 32,
                                "data_sha256": "cd" * 32}) + "\n")
    with pytest.raises(ResumeMismatch, match="another deploykit version .* --no-resume"):
        ResultsFile(path, header(), 100).open()


@pytest.mark.parametrize("resume", [True, False])
def test_a_file_deploykit_did_not_write_is_never_overwritten(tmp_path, resume):
    path = tmp_path / "results.jsonl"
    path.write_text("my own notes\n")
    with pytest.raises(BadInput, match="not a deploykit results file"):
        ResultsFile(path, header(), 100, resume=resume).open()
    assert path.read_text() == "my own notes\n"


@pytest.mark.parametrize("resume", [True, False])
@pytest.mark.parametrize("dangling", [False, True])
def test_results_are_never_written_through_a_symlink(tmp_path, resume, dangling):
    decoy = tmp_path / "elsewhere" / "decoy.jsonl"
    decoy.parent.mkdir()
    if not dangling:
        decoy.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").symlink_to(decoy)
    with pytest.raises(BadInput, match="is a symbolic link"):
        ResultsFile(out / "results.jsonl", header(), 100, resume=resume).open()
    assert (out / "results.jsonl").is_symlink()
    assert decoy.read_text() == "precious\n" if not dangling else not decoy.exists()


def enospc_after(monkeypatch, path, writes: int):
    """os.write on `path` fails with ENOSPC after `writes` successful calls (the disk fills)."""
    real, calls = os.write, {"n": 0}

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}") == str(path):
            calls["n"] += 1
            if calls["n"] > writes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_full_disk_is_a_disk_error_and_keeps_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    write_run(path, header(), range(3))
    enospc_after(monkeypatch, path, writes=2)
    with pytest.raises(DiskError, match="no space left on the disk holding .*results.jsonl") as info:
        write_run(path, header(), range(3, 10))
    assert info.value.exit_code == 3
    lines = path.read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines[1:]] == [0, 1, 2, 3, 4]


LOCK_HOLDER = textwrap.dedent("""
    import sys, time
    from deploykit.harness.outdir import locked_outdir
    with locked_outdir(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_folder_locked_by_another_process_is_refused_at_once(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = rf"output directory .*out is in use by another run \(pid {holder.pid}\)"
        with pytest.raises(OutdirBusy, match=busy), locked_outdir(out):
            pass
        assert (out / LOCK_NAME).exists()  # the refused run removed nothing
    finally:
        holder.kill()
        holder.wait()
    with locked_outdir(out):  # the lock died with its process
        pass


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    with pytest.raises(RuntimeError), locked_outdir(tmp_path / "a" / "b"):
        raise RuntimeError("device not found")
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), locked_outdir(tmp_path / "kept"):
        raise RuntimeError("device not found")
    assert (tmp_path / "kept").is_dir()
