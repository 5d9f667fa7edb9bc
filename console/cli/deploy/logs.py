"""`flctl deploy logs INVENTORY HOST [--lines N]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.deploy.run import InventoryArg, make_rollout
from flctl.console.cli.options import JsonOption


def command(
    inventory: InventoryArg,
    host: Annotated[str, typer.Argument(help="The participant (or address) whose node's log to show.")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Lines from the end of each log.")] = 100,
    json_out: JsonOption = False,
) -> None:
    """Print the end of a deployed node's log (its node.log, and the supervisor's or the journal's)."""
    rollout = make_rollout(inventory, quiet=True)
    try:
        spec = rollout.inventory.host(host)
    except KeyError:
        names = ", ".join(h.participant for h in rollout.inventory.hosts)
        terminal.abort(f"no host '{host}' in {inventory}; hosts: {names}", exit_codes.BAD_INPUT)
    text = rollout.logs(spec, lines)
    if json_out:
        terminal.print_json({"host": spec.participant, "lines": lines, "log": text})
        return
    terminal.out.print(text, markup=False, highlight=False, end="")
