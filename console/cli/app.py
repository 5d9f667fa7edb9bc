"""The `flctl` command: every command is registered here, in one place.

Each group (`job`, `kit`, `poc`…) is built when a command line names it, so `flctl job submit`
imports the `job` commands alone. Command modules import only typer at the top and their heavy
dependencies inside the command body, so `flctl --help` starts instantly.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Callable
from typing import ClassVar

import typer

from console.cli import console_cmd, exit_codes, quickstart, simulate, terminal
from console.cli.lazy_group import LazyGroup

HELP = "flctl: provision, deploy, run and watch a federated-learning federation from the terminal."


def _provision() -> typer.Typer:
    from console.cli.default_group import DefaultGroup
    from console.cli.provision import build, renew, revoke, sign

    group = typer.Typer(
        cls=DefaultGroup, no_args_is_help=True,
        help="Make signed PKI startup kits from a project.yml: `flctl provision PROJECT.yml`.",
    )
    group.command("build")(build.command)
    group.command("sign")(sign.command)
    group.command("revoke")(revoke.command)
    group.command("renew")(renew.command)
    return group


def _kit() -> typer.Typer:
    from console.cli.kit import complete, request, show, verify

    group = typer.Typer(no_args_is_help=True, help="Inspect, verify, request and complete startup kits.")
    group.command("show")(show.command)
    group.command("verify")(verify.command)
    group.command("request")(request.command)
    group.command("complete")(complete.command)
    return group


def _node() -> typer.Typer:
    from console.cli.node import start, stop

    group = typer.Typer(no_args_is_help=True, help="Run the server or a site from its startup kit.")
    group.command("start")(start.command)
    group.command("stop")(stop.command)
    return group


def _job() -> typer.Typer:
    from console.cli.job import abort, download, logs, ls, show, submit

    group = typer.Typer(no_args_is_help=True, help="Submit, list, show, abort, download and follow jobs.")
    group.command("submit")(submit.command)
    group.command("ls")(ls.command)
    group.command("show")(show.command)
    group.command("abort")(abort.command)
    group.command("download")(download.command)
    group.command("logs")(logs.command)
    return group


def _audit() -> typer.Typer:
    from console.cli.audit import tail, verify

    group = typer.Typer(no_args_is_help=True, help="Check and read tamper-evident audit logs.")
    group.command("verify")(verify.command)
    group.command("tail")(tail.command)
    return group


def _site() -> typer.Typer:
    from console.cli.site import ls

    group = typer.Typer(no_args_is_help=True, help="The sites the server knows.")
    group.command("ls")(ls.command)
    return group


def _poc() -> typer.Typer:
    from console.cli.poc import clean, prepare, start, status, stop

    group = typer.Typer(no_args_is_help=True, help="A local federation on this machine: prepare, start, status, "
                        "stop, clean.")
    group.command("prepare")(prepare.command)
    group.command("start")(start.command)
    group.command("status")(status.command)
    group.command("stop")(stop.command)
    group.command("clean")(clean.command)
    return group


def _deploy() -> typer.Typer:
    from console.cli.deploy import cloud, destroy, logs, ssh, status, stop, upgrade

    group = typer.Typer(no_args_is_help=True, help="Roll a federation out to machines over SSH, or to machines "
                        "flctl creates in AWS or Azure: ssh, aws, azure, status, stop, logs, upgrade, destroy.")
    group.command("ssh")(ssh.command)
    group.command("status")(status.command)
    group.command("stop")(stop.command)
    group.command("logs")(logs.command)
    group.command("upgrade")(upgrade.command)
    group.command("aws")(cloud.aws)
    group.command("azure")(cloud.azure)
    group.command("destroy")(destroy.command)
    return group


class FlctlGroup(LazyGroup):
    """The top level: three commands, then the groups in the order `flctl --help` lists them."""

    groups: ClassVar[dict[str, Callable[[], typer.Typer]]] = {
        "provision": _provision, "kit": _kit, "node": _node, "job": _job, "audit": _audit,
        "site": _site, "poc": _poc, "deploy": _deploy,
    }


app = typer.Typer(cls=FlctlGroup, help=HELP, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})
app.command("quickstart")(quickstart.command)
app.command("simulate")(simulate.command)
app.command("console")(console_cmd.command)


def main() -> None:
    """Entry point: the one place where expected failures become an exit code and one sentence."""
    from console.cli.failures import exit_code_for

    # At exit, skip the collector's passes over every object the command left (0.1-0.3 s of CPU after a
    # job submit): objects still go away by reference counting, and atexit handlers registered later run first.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    try:
        app()
    except KeyboardInterrupt:
        terminal.error("interrupted")
        sys.exit(exit_codes.INTERRUPTED)
    except Exception as exc:
        known = exit_code_for(exc)
        if known is None:
            raise
        code, message = known
        for line in message.splitlines():
            terminal.error(line)
        sys.exit(code)


if __name__ == "__main__":
    main()
