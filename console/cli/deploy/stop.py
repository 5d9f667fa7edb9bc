"""`flctl deploy stop INVENTORY [--json]`."""

from __future__ import annotations

from flctl.console.cli.deploy.run import InventoryArg, ParallelOption, make_rollout, report
from flctl.console.cli.options import JsonOption


def command(inventory: InventoryArg, parallel: ParallelOption = 4, json_out: JsonOption = False) -> None:
    """Stop the node on every host of the inventory, with the processes it started; the install stays."""
    report(make_rollout(inventory, quiet=json_out).stop(parallel), json_out, "stop")
