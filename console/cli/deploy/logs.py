"""`flctl deploy logs INVENTORY HOST [--lines N]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.deploy.run import InventoryArg, deployment
from flctl.console.cli.options import JsonOption


def command(
    inventory: InventoryArg,
    host: Annotated[str, typer.Argument(metavar="HOST", help="The participant (or address) whose node's log to show.")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Lines from the end of each log.")] = 100,
    json_out: JsonOption = False,
) -> None:
    """Print the end of a deployed node's log (its node.log, and the supervisor's or the journal's)."""
    from flctl.cloud import fleet

    spec, text = fleet.logs(deployment(inventory, quiet=True), host, lines)
    if json_out:
        terminal.print_json({"host": spec.participant, "lines": lines, "log": text})
        return
    terminal.peer_text(text)
