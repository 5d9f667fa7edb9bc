"""The one boundary where exceptions from the other folders become exit codes and one red sentence."""

from __future__ import annotations

from flctl.console.cli import exit_codes
from flctl.console.cli.terminal import Abort


def exit_code_for(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for an expected failure; None for a bug, which keeps its traceback."""
    if isinstance(exc, Abort):
        return exc.code, str(exc)
    from flctl.provisioner import errors as prov

    if isinstance(exc, prov.InputError):
        return exit_codes.BAD_INPUT, str(exc)
    if isinstance(exc, prov.PassphraseError):
        return exit_codes.NO_CONNECTION, str(exc)
    if isinstance(exc, prov.KitError):
        return exit_codes.BAD_INPUT, str(exc)
    if isinstance(exc, prov.ProvisionError):
        return exit_codes.FAILED, str(exc)
    from flctl.node import errors as node

    node_codes: list[tuple[type[BaseException], int]] = [
        (node.StateDamaged, exit_codes.BAD_INPUT),
        (node.ConnectionFailed, exit_codes.NO_CONNECTION), (node.NotPermitted, exit_codes.NOT_PERMITTED),
        (node.NotFound, exit_codes.FAILED), (node.BadRequest, exit_codes.BAD_INPUT),
        (node.JobError, exit_codes.BAD_INPUT), (node.TimedOut, exit_codes.TIMED_OUT),
        (node.NodeError, exit_codes.FAILED),
    ]
    for kind, code in node_codes:
        if isinstance(exc, kind):
            return code, str(exc)
    from flctl.cloud import deploy_errors as deploy

    if isinstance(exc, deploy.NotInInventory | deploy.DeployInputError):
        return exit_codes.BAD_INPUT, str(exc)
    if isinstance(exc, deploy.HostUnreachable | deploy.AuthenticationFailed | deploy.HostKeyUnknown
                  | deploy.HostKeyChanged | deploy.CloudCredentialsMissing | deploy.CloudUnreachable
                  | deploy.SchedulerUnreachable):
        return exit_codes.NO_CONNECTION, str(exc)
    if isinstance(exc, deploy.DeployError):
        return exit_codes.FAILED, str(exc)
    if isinstance(exc, PermissionError):
        return exit_codes.FAILED, f"permission denied: {exc.filename}; check the folder's owner and mode"
    if isinstance(exc, OSError) and exc.errno == 28:
        return exit_codes.FAILED, "no space left on the device; free some space and run the command again"
    return None
