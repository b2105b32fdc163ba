"""Errors that reach the user as one line, and the exit status each one means.

Library code raises these; the CLI turns them into `deploykit: error: ...` on stderr and
the exit status below, with the traceback only under `--debug`. The statuses let CI tell
a regression from a broken rig:

    0  the run passed
    1  a measured figure missed a threshold (ThresholdFailed): the model or firmware regressed
    2  the user's input is wrong (BadInput): fix the command line or the files
    3  the rig failed (RigError: DeviceError, ToolError, DiskError, NoBoardFound): the board,
       the serial link, PlatformIO or the disk; the model may be fine
  130  interrupted (Ctrl-C or SIGTERM); results written so far are kept
"""

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_RIG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class DeployKitError(Exception):
    """A failure the user can act on. The message names the thing, the value and the fix."""

    exit_code = EXIT_FAILED


class BadInput(DeployKitError):
    """The user's input (path, file, option, data) is wrong. Exit status 2."""

    exit_code = EXIT_BAD_INPUT


class RigError(DeployKitError):
    """The test rig failed (device, link, toolchain, disk), not the thing under test. Exit status 3."""

    exit_code = EXIT_RIG


class DeviceError(RigError):
    """The board or serial link failed in a way retries could not fix."""


class ToolError(RigError):
    """An outside tool (PlatformIO, a compiler) failed, or could not fetch what it needs."""


class DiskError(RigError):
    """The disk refused a write (full, read-only, quota): one line instead of `OSError 28`."""


class NoBoardFound(RigError):
    """No board is connected where one was expected (`--port auto`, or `deploy` in CI)."""


class ThresholdFailed(DeployKitError):
    """A measured figure missed a threshold the user set. Exit status 1."""

    exit_code = EXIT_FAILED


class MissingPackage(RigError):
    """An optional package a command needs is not installed here (the light install has no
    TensorFlow or TFLM). Exit status 3: this host, not the input, lacks something."""
