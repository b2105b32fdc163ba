"""The `deploykit` command line: a thin layer that parses, calls one library function, prints.

Subcommands are imported only when they run, so `deploykit --help` never pays for
TensorFlow. Every DeployKitError becomes one line on stderr and its exit status; the
traceback is shown only with `--debug`. Exit statuses (deploykit.errors): 0 passed,
1 a threshold failed, 2 bad input, 3 the rig failed, 130 interrupted.

SIGTERM (a CI job cancelled, `timeout`, a container stopped) is handled as Ctrl-C: it
raises KeyboardInterrupt in the main thread, so every `with` block unwinds (results.jsonl
is flushed and closed whole, the device session closes, temporary files are removed)
and the run ends with 130 instead of being killed mid-write. A second SIGTERM while
that cleanup runs kills at once.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import logging
import signal
import sys

import click

from deploykit import __version__
from deploykit.errors import EXIT_INTERRUPTED, DeployKitError, DiskError

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
# The rig's disk, not the user's input: full, over quota, file too large, read-only, failing.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}

# name -> (module path, attribute, one-line help shown by `deploykit --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": ("deploykit.commands.convert", "convert", "Quantize a model and write model.tflite + manifest.json."),
    "inspect": ("deploykit.commands.inspect", "inspect", "Show ops, tensors, TFLM support and arena of a .tflite."),
    "boards": ("deploykit.commands.boards", "boards", "List the boards deploykit knows."),
    "render": ("deploykit.commands.render", "render", "Render a PlatformIO project for a manifest and a board."),
    "virtual-board": ("deploykit.commands.virtual_board", "virtual_board", "Serve a virtual board on a pty."),
    "hil": ("deploykit.commands.hil", "hil", "Hardware-in-the-loop runs against a board."),
    "farm": ("deploykit.commands.farm", "farm", "Run one test set over many boards (labgrid places)."),
    "build": ("deploykit.commands.build", "build", "Build a rendered project with PlatformIO."),
    "flash": ("deploykit.commands.flash", "flash", "Flash a built project to a board."),
    "devices": ("deploykit.commands.devices", "devices", "List connected boards."),
    "deploy": ("deploykit.commands.deploy", "deploy", "Convert, render, build, flash and test in one go."),
    "demo": ("deploykit.commands.demo", "demo", "Run the sine example end to end on the virtual board."),
    "calibrate": ("deploykit.commands.calibrate", "calibrate",
                  "Measure a board's operator costs; write ID.cost.toml for the virtual board."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx):
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    return importlib.util.find_spec(COMMANDS[name][0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deploykit")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx, debug):
    """Hardware-in-the-loop toolkit for TinyML models on TensorFlow Lite Micro."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None) -> None:
    """Run the CLI; turn DeployKitError into one line and an exit status."""
    args = hoist_debug(sys.argv[1:] if argv is None else list(argv))
    debug = bool(args) and args[0] == "--debug"
    try:
        with _sigterm_interrupts(), _verbose(debug):
            result = cli.main(args=args, prog_name="deploykit", standalone_mode=False)
    except click.exceptions.Abort:
        _interrupted()
    except click.UsageError as exc:  # a bad option or argument: one line, like any bad input
        if isinstance(exc, _NO_ARGS_IS_HELP):  # bare `deploykit`: the help is the answer
            exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx else "deploykit"
        click.echo(f"deploykit: error: {exc.format_message().rstrip('.')}; see `{where} --help`", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except DeployKitError as exc:
        if debug:
            raise
        click.echo(f"deploykit: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except OSError as exc:  # a disk that refused a write the library did not explain itself
        if debug or exc.errno not in DISK_ERRNOS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        elsewhere = " or choose another -o" if _takes(args, "-o") else ""
        click.echo(f"deploykit: error: the disk refused a write{where}: {exc.strerror}; free space"
                   f"{elsewhere}, then run again (a HIL run resumes)", err=True)
        sys.exit(DiskError.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


def _takes(args: list[str], flag: str) -> bool:
    """Whether the command `args` ran (`hil run`, `build`, ...) has `flag`: a message suggests only those."""
    ctx = click.Context(cli)
    words = [a for a in args if not a.startswith("-")]
    command = cli.get_command(ctx, words[0]) if words else None
    if isinstance(command, click.Group):
        command = command.get_command(ctx, words[1]) if len(words) > 1 else None
    return command is not None and any(flag in p.opts for p in command.params)


def hoist_debug(args: list[str]) -> list[str]:
    """`--debug` anywhere before a `--` moves in front of the subcommand, where the group takes it:
    `deploykit convert m.keras --debug` is the same as `deploykit --debug convert m.keras`."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]


@contextlib.contextmanager
def _verbose(debug: bool):
    """--debug sets the `deploykit` logger to DEBUG for this run: deploykit.model.tf_backend then
    lets TensorFlow's, absl's and Keras' logs and warnings through (otherwise it keeps them out)."""
    logger = logging.getLogger("deploykit")
    previous = logger.level
    if debug:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _interrupted() -> None:
    click.echo("deploykit: interrupted; results written so far are kept (run again to resume)", err=True)
    sys.exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _sigterm_interrupts():
    """While the CLI runs, the first SIGTERM raises KeyboardInterrupt; a second kills."""
    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
