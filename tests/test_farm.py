"""`farm run` as a library and a command: sharding, failover, merge, resume, board kinds.

Boards here are virtual:// URLs (in-process) or virtual boards behind a real ser2net;
the labgrid end to end run is in test_farm_labgrid.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from deploykit.cli import main
from deploykit.errors import BadInput
from deploykit.harness.farm import Place, run_farm
from deploykit.link.session import Timeouts


def vurl(manifest, board="virtual", **opts) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"board": board, "pacing": 0, **opts}.items())
    return f"virtual://{manifest.path}?{query}"


def rows(outdir) -> list[dict]:
    return [json.loads(line) for line in (outdir / "results.jsonl").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def single(sine_manifest, tmp_path_factory):
    """index -> outputs of one board running the whole set: what a farm must reproduce."""
    from deploykit.harness.run import run_hil
    out = tmp_path_factory.mktemp("single")
    run_hil(sine_manifest.path, vurl(sine_manifest), outdir=out, float_reference=False, limit=400)
    return {r["index"]: r["outputs"] for r in rows(out)}


def test_three_boards_share_the_set_once_each_and_merge_one_report(sine_manifest, tmp_path, single):
    # paced as the board is: unpaced, one place can run all 400 one-byte samples before the others open
    places = [Place(f"p{i}", vurl(sine_manifest, seed=i, pacing=1), "virtual") for i in range(3)]
    report = run_farm(sine_manifest.path, places, outdir=tmp_path / "f", limit=400, float_reference=False, chunk=8)
    got = rows(tmp_path / "f")
    assert sorted(r["index"] for r in got) == list(range(400))
    assert {r["index"]: r["outputs"] for r in got} == single
    assert {r["place"] for r in got} == {"p0", "p1", "p2"} and {r["board"] for r in got} == {"virtual"}
    assert report["samples"] == 400 and report["agreement"]["tflm_host"]["exact_fraction"] == 1.0
    per_place = {p["place"]: p for p in report["farm"]["places"]}
    assert sum(p["samples"] for p in per_place.values()) == 400
    assert all(p["latency"]["us"]["p50"] > 0 and p["failed"] is None for p in per_place.values())
    md = (tmp_path / "f" / "report.md").read_text()
    assert "Latency per place (us" in md and "| figure | p0 | p1 | p2 |" in md


@pytest.mark.slow
def test_a_place_that_dies_mid_run_has_its_samples_finished_by_the_others(sine_manifest, tmp_path, single):
    from deploykit.virtual_board.lab import Host
    with Host("fail", tmp_path / "host") as host:
        ports = [host.add_board(sine_manifest, baud=9600) for _ in range(3)]
        places = [Place(f"p{i}", f"rfc2217://127.0.0.1:{p}", "virtual") for i, p in enumerate(ports)]
        outdir = tmp_path / "f"

        def cut():
            _wait_rows(outdir / "results.jsonl", 30)
            host.stop_ser2net(host.boards[1])      # p1's network side is gone for good
        killer = threading.Thread(target=cut)
        killer.start()
        report = run_farm(sine_manifest.path, places, outdir=outdir, limit=400, float_reference=False,
                          baud=9600, chunk=16, session_options={"timeouts": Timeouts(reopen_within=2.0)})
        killer.join()
    got = rows(outdir)
    assert sorted(r["index"] for r in got) == list(range(400))      # every sample exactly once
    assert {r["index"]: r["outputs"] for r in got} == single
    assert [f["place"] for f in report["farm"]["failed"]] == ["p1"]
    assert "place p1 failed" in (outdir / "report.md").read_text()
    assert report["passed"]


def _wait_rows(path, n, within=30.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_farm_run_resumes_every_shard(sine_manifest, tmp_path, single):
    places = [Place(f"p{i}", vurl(sine_manifest), "virtual") for i in range(2)]
    run_farm(sine_manifest.path, places, outdir=tmp_path / "f", limit=400, float_reference=False)
    results = tmp_path / "f" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:201]) + lines[201][:7])      # killed mid-write after 200 rows
    report = run_farm(sine_manifest.path, places, outdir=tmp_path / "f", limit=400, float_reference=False)
    got = rows(tmp_path / "f")
    assert sorted(r["index"] for r in got) == list(range(400))
    assert {r["index"]: r["outputs"] for r in got} == single
    assert report["resumed_samples"] == 200


def test_mixed_board_kinds_are_refused_without_matrix(sine_manifest, tmp_path, capsys):
    places = [Place("a", vurl(sine_manifest), "virtual"), Place("b", vurl(sine_manifest, "esp32dev"), "esp32dev")]
    with pytest.raises(BadInput, match="different board kinds.*--matrix"):
        run_farm(sine_manifest.path, places, outdir=tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_farm_cli_over_ports_prints_one_line_per_place(sine_manifest, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["farm", "run", "-m", str(sine_manifest.path), "--limit", "100", "-o", str(tmp_path / "f"),
              "--board", "virtual", "--port", vurl(sine_manifest, seed=1), "--port", vurl(sine_manifest, seed=2)])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    assert out.startswith("100 samples on virtual") and out.count("samples, latency p50") == 2
    assert len(rows(tmp_path / "f")) == 100


@pytest.mark.slow
def test_matrix_gives_each_kind_the_whole_set_and_compares_them(sine_manifest, tmp_path, single):
    places = [Place("v", vurl(sine_manifest), "virtual"), Place("e1", vurl(sine_manifest, "esp32dev"), "esp32dev"),
              Place("e2", vurl(sine_manifest, "esp32dev"), "esp32dev")]
    report = run_farm(sine_manifest.path, places, outdir=tmp_path / "m", limit=400, float_reference=False, matrix=True)
    assert set(report["matrix"]) == {"virtual", "esp32dev"}
    for kind in ("virtual", "esp32dev"):
        got = rows(tmp_path / "m" / kind)
        assert sorted(r["index"] for r in got) == list(range(400)) and {r["board"] for r in got} == {kind}
        assert {r["index"]: r["outputs"] for r in got} == single
    cols = report["matrix"]
    assert cols["esp32dev"]["places"] == 2 and cols["virtual"]["places"] == 1
    assert cols["esp32dev"]["latency_us_p50"] != cols["virtual"]["latency_us_p50"]   # different cost models
    assert "| figure | esp32dev | virtual |" in (tmp_path / "m" / "report.md").read_text()


def test_farm_cli_needs_one_way_to_name_boards(sine_manifest, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["farm", "run", "-m", str(sine_manifest.path), "-o", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--place" in err and len(err.strip().splitlines()) == 1


def test_without_labgrid_a_place_says_what_to_install(sine_manifest, tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "labgrid.remote", None)     # as if labgrid were not installed
    monkeypatch.setitem(sys.modules, "labgrid.remote.client", None)
    with pytest.raises(SystemExit) as info:
        main(["farm", "run", "-m", str(sine_manifest.path), "--place", "p1", "-o", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "pip install deploykit[farm]" in err and len(err.strip().splitlines()) == 1
