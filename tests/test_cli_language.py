"""The CLI speaks one language: one spelling per concept in every command, `--debug` anywhere,
messages that name only the command's own flags, whole lines in a CI log (no terminal),
a given --port checked before deploy converts, failed thresholds named with their miss."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import click
import numpy as np
import pytest

from deploykit.cli import COMMANDS, cli, main
from deploykit.commands import LabelColumn, counters, failed_thresholds

ROOT = Path(__file__).resolve().parents[1]

# concept -> (the one documented spelling, its short form or None, spellings that must not be documented)
CONCEPTS = {
    "output directory": ("--outdir", "-o", {"--output", "--out", "--output-dir", "--out-dir"}),
    "test data": ("--data", None, {"--test-data", "--dataset", "--test-set"}),
    "board kind": ("--board", None, {"--profile", "--board-id", "--target"}),
    "where the board is": ("--port", "-p", {"--device", "--serial-port", "--url"}),
    "manifest": ("--manifest", "-m", set()),
    "label column": ("--label-column", None, {"--label-col", "--labels", "--label"}),
}


def all_commands():
    """(path, click command) for every command and subcommand in deploykit.cli's table."""
    ctx = click.Context(cli)
    found = []
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", command.get_command(ctx, sub)) for sub in command.list_commands(ctx)]
        else:
            found.append((name, command))
    return found


def documented(option: click.Option) -> list[str]:
    """The spellings --help shows for an option (old ones kept as hidden aliases excluded)."""
    if option.hidden:
        return []
    old = set(getattr(option, "old_opts", ()))
    return [o for o in (*option.opts, *option.secondary_opts) if o not in old]


def options(command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def flags(command) -> set[str]:
    """Every spelling a command parses, hidden ones included."""
    return {o for p in options(command) for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}


COMMAND_LIST = all_commands()


def test_the_table_reaches_every_command():
    names = {path for path, _ in COMMAND_LIST}
    assert {"convert", "inspect", "render", "deploy", "demo", "hil run", "farm run", "flash"} <= names


@pytest.mark.parametrize("path,command", COMMAND_LIST, ids=[p for p, _ in COMMAND_LIST])
def test_one_spelling_per_concept_and_short_forms(path, command):
    for concept, (spelling, short, others) in CONCEPTS.items():
        for option in options(command):
            shown = documented(option)
            assert not others & set(shown), f"{path}: {concept} documented as {shown}; spell it {spelling}"
            if spelling in shown and short:
                assert short in shown, f"{path}: {spelling} without its short form {short}"
    for option in options(command):
        if "--board" in documented(option):
            assert option.metavar == "ID", f"{path}: --board shows {option.metavar}, not --board ID"
    labelled = [o for o in options(command) if "--label-column" in o.opts]
    has_data = any("--data" in documented(o) for o in options(command))
    if has_data and path != "deploy" or labelled:  # every command reading a data file takes a label column
        assert len(labelled) == 1 and isinstance(labelled[0].type, LabelColumn), \
            f"{path}: --label-column must take an index or a header name"


def test_a_parameter_has_one_spelling_across_commands():
    """The same parameter (e.g. `outdir`) is never `--outdir` in one command and `--output` in another."""
    spellings: dict[str, set[str]] = {}
    for _, command in COMMAND_LIST:
        for option in options(command):
            longs = {o for o in documented(option) if o.startswith("--") and o not in option.secondary_opts}
            if longs:
                spellings.setdefault(option.name, set()).update(longs)
    assert {name: s for name, s in spellings.items() if len(s) > 1} == {}


@pytest.mark.parametrize("path,argv,param,value", [
    ("render", ["M", "--board", "b", "--output", "d"], "outdir", Path("d")),
    ("deploy", ["M", "--output", "d"], "outdir", Path("d")),
    ("demo", ["--output", "d"], "outdir", Path("d")),
    ("convert", ["M", "--test-data", "t.npz"], "test_data", "t.npz"),
    ("inspect", ["M", "--test-data", "t.npz"], "test_data", "t.npz"),
    ("deploy", ["M", "--profile", "esp32dev"], "profile", "esp32dev"),
    ("hil run", ["-m", "M", "-p", "auto", "--label-column", "label"], "label_column", "label"),
    ("convert", ["M", "--label-column", "-1"], "label_column", -1),
])
def test_old_spellings_still_parse(path, argv, param, value):
    command = dict(COMMAND_LIST)[path]
    with command.make_context(path, list(argv)) as ctx:
        assert ctx.params[param] == value


@pytest.mark.parametrize("path,old", [("render", "--output"), ("deploy", "--output"), ("demo", "--output"),
                                      ("convert", "--test-data"), ("inspect", "--test-data"),
                                      ("deploy", "--profile")])
def test_old_spellings_are_not_in_help(path, old, capsys):
    with pytest.raises(SystemExit):
        main([*path.split(), "--help"])
    assert old not in capsys.readouterr().out


# --------------------------------------------------------------------------- --debug

def test_debug_after_the_subcommand_shows_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / "missing.keras")
    with pytest.raises(SystemExit) as exit_:
        main(["convert", missing, "-o", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "does not exist" in capsys.readouterr().err
    from deploykit.errors import BadInput
    with pytest.raises(BadInput, match="does not exist"):  # raised through: the traceback is shown
        main(["convert", missing, "-o", str(tmp_path / "o"), "--debug"])


def test_debug_after_a_double_dash_is_an_argument():
    from deploykit.cli import hoist_debug
    assert hoist_debug(["hil", "run", "--debug", "-m", "M"]) == ["--debug", "hil", "run", "-m", "M"]
    assert hoist_debug(["convert", "--", "--debug"]) == ["convert", "--", "--debug"]


# --------------------------------------------------------------------------- messages name real flags

def named_flags(message: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", message))


def assert_flags_exist(path: str, message: str):
    command = dict(COMMAND_LIST)[path]
    missing = named_flags(message) - flags(command)
    assert not missing, f"{path} suggests {sorted(missing)}, which it does not have: {message}"


@pytest.fixture
def no_boards(mocker):
    return mocker.patch("deploykit.toolchain.devices.list_ports.comports", return_value=[])


def test_no_board_found_names_only_flags_of_flash_and_hil_run(no_boards, sine_manifest, tmp_path, capsys):
    from deploykit.errors import NoBoardFound
    from deploykit.toolchain.devices import find_board_port

    with pytest.raises(NoBoardFound) as exc:
        find_board_port("nano33ble_sense")
    for path in ("flash", "hil run"):
        assert_flags_exist(path, str(exc.value))
    assert "--board virtual" not in str(exc.value)  # neither flash nor hil run has such a board
    with pytest.raises(SystemExit) as exit_:
        main(["hil", "run", "-m", str(sine_manifest.path), "-p", "auto", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_.value.code == 3 and "no connected serial port" in err
    assert_flags_exist("hil run", err)


def test_deploy_without_a_board_suggests_its_own_port_virtual(no_boards):
    from deploykit.deploy import choose_target
    from deploykit.errors import NoBoardFound

    with pytest.raises(NoBoardFound) as exc:
        choose_target("nano33ble_sense", "auto", "virtual")
    assert "--port virtual" in str(exc.value)
    assert_flags_exist("deploy", str(exc.value))


def test_deploy_without_representative_data_names_deploys_flags(example_files, tmp_path, capsys, no_boards):
    with pytest.raises(SystemExit) as exit_:
        main(["deploy", str(example_files["sine"]["model"]), "--port", "virtual", "-o", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--rep-data" in err and "--data" in err, err
    assert_flags_exist("deploy", err)
    assert_flags_exist("convert", err)


# --------------------------------------------------------------------------- --label-column INDEX|NAME

def labelled_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    rows = ["y," + ",".join(f"f{i}" for i in range(x.shape[1]))]
    rows += [",".join([f"{b:.6f}", *(f"{v:.6f}" for v in a)]) for a, b in zip(x, y, strict=False)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_load_data_takes_a_header_name_or_an_index(tmp_path):
    from deploykit.errors import BadInput
    from deploykit.model.datafiles import load_data

    csv = labelled_csv(tmp_path / "d.csv", np.arange(6, dtype=np.float32).reshape(3, 2), np.array([7, 8, 9]))
    by_name, by_index = load_data(csv, "y"), load_data(csv, "0")
    assert by_name.y.tolist() == by_index.y.tolist() == [7, 8, 9]
    assert by_name.x.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert load_data(csv, "f1").y.tolist() == [1, 3, 5]
    with pytest.raises(BadInput, match="not a column.*y, f0, f1"):
        load_data(csv, "label")
    bare = tmp_path / "bare.csv"
    bare.write_text("1,2\n3,4\n")
    with pytest.raises(BadInput, match="no header line"):
        load_data(bare, "y")


def test_manifest_records_a_label_column_name():
    from deploykit.model.manifest_schema import _source
    _source({"label_column": "y"})
    _source({"label_column": -1})


def test_hil_run_takes_a_labelled_csv(sine_manifest, tmp_path, capsys):
    """Also: a failed threshold says in the console by how much it missed."""
    test = np.load(sine_manifest.source_path("test_data"))
    x = test["x"].reshape(len(test["x"]), -1)[:12]
    csv = labelled_csv(tmp_path / "t.csv", x, test["y"].reshape(len(test["y"]), -1)[:12, 0])
    port = f"virtual://{sine_manifest.path}?pacing=0"
    with pytest.raises(SystemExit) as exit_:
        main(["hil", "run", "-m", str(sine_manifest.path), "-p", port, "--data", str(csv), "--label-column", "y",
              "-o", str(tmp_path / "r"), "--quiet", "--max-arena", "10"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 1, err
    assert json.loads((tmp_path / "r" / "report.json").read_text())["samples"] == 12
    assert re.search(r"arena\.used = [\d,]+ B, required <= 10 B: over by [\d,]+ B", err), err
    assert "link faults: none" in out and "{" not in out


def test_failed_thresholds_and_counters_read_as_words():
    cases = [{"figure": "agreement.tflm_host.exact_fraction", "value": 0.95, "limit": 0.99, "op": ">=",
              "passed": False},
             {"figure": "latency.us.p99", "value": 201.4, "limit": 10, "op": "<=", "passed": False},
             {"figure": "arena.used", "value": 100, "limit": 200, "op": "<=", "passed": True}]
    assert failed_thresholds(cases) == [
        "agreement.tflm_host.exact_fraction = 0.95, required >= 0.99: short by 0.04",
        "latency.us.p99 = 201 µs, required <= 10 µs: over by 191 µs"]
    assert counters({"retries": 0, "crc_errors": 0}) == "none"
    assert counters({"retries": 1, "crc_errors": 2, "resets": 0}) == "1 retry, 2 CRC errors"


# --------------------------------------------------------------------------- deploy checks --port first

def test_deploy_checks_a_given_port_before_converting(tmp_path, capsys, mocker):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the port is checked first")
    convert = mocker.patch("deploykit.model.convert.convert", side_effect=AssertionError("converted"))
    with pytest.raises(SystemExit) as exit_:
        main(["deploy", str(model), "--board", "nano33ble_sense", "-p", str(tmp_path / "ttyNONE"),
              "-o", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "ttyNONE does not exist" in err, err
    assert not convert.called and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- no terminal: a CI log

def run_without_terminal(args, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "80"
    return subprocess.run([sys.executable, "-m", "deploykit", *args], cwd=tmp_path, env=env, text=True,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)


FRAMES = re.compile("[\u2500-\u259f\u2800-\u28ff]")  # box drawing, bars, braille spinner frames


@pytest.mark.slow
def test_deploy_in_a_ci_log_prints_whole_lines(sine_manifest, tmp_path):
    run = run_without_terminal(["deploy", str(sine_manifest.path), "-p", "virtual", "--board", "nano33ble_sense",
                                "-o", str(tmp_path / "o"), "--limit", "10"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert not FRAMES.search(run.stdout + run.stderr), run.stdout + run.stderr
    fit = [line for line in run.stdout.splitlines() if line.strip().startswith("fit:")]
    assert len(fit) == 1 and re.search(r"RAM [\d,]+/[\d,]+ B \(\d+%\) \[projected\]$", fit[0]), run.stdout
    assert "hil: done in" in run.stderr and "{'" not in run.stdout


@pytest.mark.slow
def test_hil_run_in_a_ci_log_has_no_bar_and_no_dict(sine_manifest, tmp_path):
    port = f"virtual://{sine_manifest.path}?pacing=0"
    run = run_without_terminal(["hil", "run", "-m", str(sine_manifest.path), "-p", port, "--limit", "20",
                                "-o", str(tmp_path / "r")], tmp_path)
    assert run.returncode == 0, run.stderr
    assert not FRAMES.search(run.stdout + run.stderr) and "{'" not in run.stdout, run.stdout + run.stderr
    assert "link faults: none" in run.stdout


def test_build_status_in_a_ci_log_is_one_line():
    import io

    from rich.console import Console

    from deploykit.commands.display import line_status

    sink = io.StringIO()
    with line_status("Building fw", console=Console(file=sink, force_terminal=False)) as on_line:
        for i in range(50):
            on_line(f"Compiling file{i}.o")
    assert sink.getvalue() == "Building fw…\n"


# --------------------------------------------------------------------------- TensorFlow stays quiet

def test_tensorflow_and_absl_stay_quiet_unless_debug():
    import logging

    from absl import logging as absl_logging

    from deploykit.model import tf_backend

    before = absl_logging.get_verbosity()
    logger = logging.getLogger("deploykit")
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            tf_backend.tf()
            assert absl_logging.get_verbosity() == absl_logging.ERROR
            warnings.warn_explicit("chatter", UserWarning, "layer.py", 1, module="keras.src.layers.core")
            warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="deploykit.x")
        assert [str(w.message) for w in seen] == ["ours"]
        logger.setLevel(logging.DEBUG)  # what --debug does
        tf_backend.tf()
        assert absl_logging.get_verbosity() == absl_logging.INFO
    finally:
        logger.setLevel(logging.NOTSET)
        absl_logging.set_verbosity(before)


OTHER_TOOLS_FLAGS = {"--upload-port", "--json-output", "--serial", "--wrap"}  # PlatformIO's and the linker's


def test_every_flag_the_library_names_is_a_deploykit_flag():
    """A message or docstring naming a flag no command has (e.g. `--test-data` after the
    rename) sends the user to a dead end; the pytest plugin, the protocol generator and the
    labgrid lab have flags of their own."""
    known = set().union(*(flags(command) for _, command in COMMAND_LIST)) | {"--debug", "--version"}
    skip = ("pytest_plugin.py", "protocol", "lab.py")
    stale = []
    for source in (ROOT / "deploykit").rglob("*.py"):
        if any(part in source.parts or source.name == part for part in skip):
            continue
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            stale += [f"{source.name}:{number} {flag}" for flag in named_flags(line)
                      if flag not in known | OTHER_TOOLS_FLAGS]
    assert stale == []


@pytest.mark.parametrize("argv,suggests_o", [(["build", "fw"], False), (["hil", "run", "-m", "M"], True),
                                             (["--debug", "render", "M"], True)])
def test_the_disk_message_suggests_o_only_where_it_exists(argv, suggests_o):
    from deploykit.cli import _takes
    assert _takes(argv, "-o") is suggests_o


def test_hil_run_port_virtual_stands_in_for_board(sine_manifest, tmp_path, capsys):
    """`--port virtual` means the same in hil run as in deploy: the virtual board as --board."""
    with pytest.raises(SystemExit) as exit_:
        main(["hil", "run", "-m", str(sine_manifest.path), "-p", "virtual", "--board", "nano33ble_sense",
              "--limit", "5", "-o", str(tmp_path / "r"), "--quiet"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["samples"] == 5 and report["simulated"] is True
    assert "5 samples on nano33ble_sense (simulated)" in out
