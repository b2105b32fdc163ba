"""Errors that reach the user as one line.

Library code raises these; the CLI turns them into `deploykit: error: ...` on stderr and
the exit status below, with the traceback only under `--debug`.
"""


class DeployKitError(Exception):
    """A failure the user can act on. The message names the thing, the value and the fix."""

    exit_code = 1


class BadInput(DeployKitError):
    """The user's input (path, file, option, data) is wrong. Exit status 2."""

    exit_code = 2


class DeviceError(DeployKitError):
    """The board or serial link failed in a way retries could not fix."""

    exit_code = 1


class ToolError(DeployKitError):
    """An outside tool (PlatformIO, a compiler) failed."""

    exit_code = 1


class RigError(DeployKitError):
    """The rig failed (a crashed tool, the device, the link, the disk), not the user's input. Exit status 3."""

    exit_code = 3


class ThresholdFailed(DeployKitError):
    """A measured figure missed a threshold the user set. Exit status 1."""

    exit_code = 1
