"""The `flctl` command: every command is registered here, in one place.

Command modules import only typer at the top and their heavy dependencies inside
the command body, so `flctl --help` starts instantly.
"""

from __future__ import annotations

import sys

import typer

from console.cli import exit_codes, terminal
from console.cli.default_group import DefaultGroup
from console.cli.kit import complete as kit_complete
from console.cli.kit import request as kit_request
from console.cli.kit import show as kit_show
from console.cli.kit import verify as kit_verify
from console.cli.provision import build as provision_build
from console.cli.provision import sign as provision_sign

HELP = "flctl: provision, deploy, run and watch a federated-learning federation from the terminal."

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})

provision_app = typer.Typer(
    cls=DefaultGroup, no_args_is_help=True,
    help="Make signed PKI startup kits from a project.yml: `flctl provision PROJECT.yml`.",
)
provision_app.command("build")(provision_build.command)
provision_app.command("sign")(provision_sign.command)
app.add_typer(provision_app, name="provision")

kit_app = typer.Typer(no_args_is_help=True, help="Inspect, verify, request and complete startup kits.")
kit_app.command("show")(kit_show.command)
kit_app.command("verify")(kit_verify.command)
kit_app.command("request")(kit_request.command)
kit_app.command("complete")(kit_complete.command)
app.add_typer(kit_app, name="kit")


def main() -> None:
    """Entry point: the one place where expected failures become an exit code and one sentence."""
    from console.cli.failures import exit_code_for

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
