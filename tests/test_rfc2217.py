"""Remote boards over the network: a real ser2net 4 in front of a virtual board's pty.

rfc2217:// (plain, as a user writes it) and socket:// run `hil run` with exact results;
ser2net killed and restarted mid-run costs nothing; the reset over RFC 2217 reaches the
board behind ser2net (the 1200-baud touch, as a pty has no DTR).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from deploykit.cli import main
from deploykit.link import ports
from deploykit.protocol import Hello
from deploykit.virtual_board.lab import Host, ser2net_binary
from deploykit.virtual_board.rawclient import RawClient

pytestmark = pytest.mark.slow  # ser2net subprocesses

try:
    ser2net_binary()
except Exception:  # noqa: BLE001 - .ci/run installs it; a bare dev box may not have it
    pytest.skip("ser2net is not installed (`apt-get install ser2net`)", allow_module_level=True)


@pytest.fixture
def host(tmp_path):
    lab = Host("rfc", tmp_path / "host")
    yield lab
    lab.stop()


def rows(outdir) -> dict:
    lines = (outdir / "results.jsonl").read_text().splitlines()[1:]
    found = [json.loads(line) for line in lines]
    return {r["index"]: r for r in found}, [r["index"] for r in found]


def hil(capsys, manifest, port, outdir, *extra) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(["hil", "run", "--manifest", str(manifest.path), "--port", port, "-o", str(outdir),
              "--quiet", *extra])
    return info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(sine_manifest, tmp_path_factory):
    """The rows of an in-process virtual board run: what the remote runs must equal."""
    from deploykit.harness.run import run_hil
    out = tmp_path_factory.mktemp("ref")
    run_hil(sine_manifest.path, f"virtual://{sine_manifest.path}?pacing=0", outdir=out,
            float_reference=False, limit=300)
    return rows(out)[0]


@pytest.mark.parametrize("scheme", ["rfc2217", "socket"])
def test_hil_run_over_ser2net_has_exact_results(sine_manifest, host, tmp_path, capsys, reference, scheme):
    port = host.add_board(sine_manifest, pacing=False, rfc2217=scheme == "rfc2217")
    code, err = hil(capsys, sine_manifest, f"{scheme}://127.0.0.1:{port}", tmp_path / "r", "--limit", "300")
    assert code == 0, err
    got, order = rows(tmp_path / "r")
    assert sorted(order) == list(range(300))
    assert {i: r["outputs"] for i, r in got.items()} == {i: r["outputs"] for i, r in reference.items()}
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["agreement"]["tflm_host"]["exact_fraction"] == 1.0


def test_ser2net_killed_and_restarted_mid_run_loses_and_repeats_nothing(sine_manifest, host, tmp_path, reference):
    from deploykit.harness.run import run_hil
    port = host.add_board(sine_manifest, pacing=True, baud=19200)   # paced and slow: seconds to cut into
    board = host.boards[0]
    outcome = {}

    def run():
        try:
            outcome["report"] = run_hil(sine_manifest.path, f"rfc2217://127.0.0.1:{port}", baud=19200,
                                        outdir=tmp_path / "r", float_reference=False, limit=300)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    _wait_for_rows(tmp_path / "r" / "results.jsonl", 40)
    host.stop_ser2net(board)                   # the network side goes away mid-run
    time.sleep(0.5)
    host.start_ser2net(board)                  # and comes back on the same port
    worker.join(60)
    assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
    got, order = rows(tmp_path / "r")
    assert sorted(order) == list(range(300))   # every sample once: none lost, none repeated
    assert {i: r["outputs"] for i, r in got.items()} == {i: r["outputs"] for i, r in reference.items()}
    assert outcome["report"]["faults"]["reconnects"] >= 1


def _wait_for_rows(path, n, within=20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {n} rows")


def test_plain_rfc2217_url_gets_ign_set_control_once():
    assert ports.network_url("rfc2217://h:1") == "rfc2217://h:1?ign_set_control"
    assert ports.network_url("rfc2217://h:1?timeout=5") == "rfc2217://h:1?timeout=5&ign_set_control"
    assert ports.network_url("rfc2217://h:1?ign_set_control") == "rfc2217://h:1?ign_set_control"
    assert ports.network_url("socket://h:1") == "socket://h:1"


def test_reset_over_rfc2217_reboots_the_board_behind_ser2net(sine_manifest, host):
    port = host.add_board(sine_manifest, pacing=False)
    link = ports.open_port(f"rfc2217://127.0.0.1:{port}", 115200, timeout=0.05)
    try:
        client = RawClient(link)
        client.handshake()
        client.text.clear()
        ports.pulse_reset(link)   # ser2net confirms no DTR change on a pty: the 1200-baud touch
        got = client.receive(lambda ms: any(isinstance(m, Hello) for m in ms))
        assert any(isinstance(m, Hello) for m in got)
        assert b"deploykit virtual board" in bytes(client.text)   # a boot banner: it rebooted
        assert link.baudrate == 115200                            # and the line rate is back
    finally:
        link.close()


class _Option:
    def __init__(self, answered):
        self.answered = answered

    def is_ready(self):
        return self.answered


class _Rfc2217Port:
    """pyserial's RFC 2217 port as pulse_reset sees it: DTR never fails, the server may not confirm."""

    def __init__(self, answered):
        self._rfc2217_options = {"control": _Option(answered)}
        self.dtr, self.baudrate, self.port, self.rates = True, 115200, "rfc2217://x:1", []

    def __setattr__(self, name, value):
        if name == "baudrate" and "rates" in self.__dict__:
            self.rates.append(value)
        object.__setattr__(self, name, value)


@pytest.mark.parametrize("answered, rates", [(True, []), (False, [1200, 115200])])
def test_reset_touches_1200_baud_only_when_the_server_confirms_no_dtr(answered, rates):
    port = _Rfc2217Port(answered)
    ports.pulse_reset(port, pulse=0.01)
    assert port.rates == rates and port.dtr is True
