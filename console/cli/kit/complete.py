"""`flctl kit complete KIT --key KEY`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="The kit the provisioner made from your request.")],
    key: Annotated[Path, typer.Option("--key", help="The key `flctl kit request` made.")],
    json_out: JsonOption = False,
) -> None:
    """Add your own private key to a kit made from your certificate request, then verify the kit."""
    from flctl.provisioner.csr import complete_kit

    report = complete_kit(kit, key)
    if json_out:
        terminal.print_json({"kit": str(report.kit), "participant": report.participant, "kind": report.kind,
                             "ok": report.ok, "problems": report.problems})
        if not report.ok:
            raise typer.Exit(exit_codes.FAILED)
        return
    if not report.ok:
        for problem in report.problems:
            terminal.error(problem)
        raise typer.Exit(exit_codes.FAILED)
    terminal.success(f"{report.kind} kit '{report.participant}' is complete and verified")
