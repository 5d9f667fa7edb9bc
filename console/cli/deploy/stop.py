"""`flctl deploy stop INVENTORY [--json]`."""

from __future__ import annotations

from flctl.console.cli.deploy.run import InventoryArg, ParallelOption, deployment, report
from flctl.console.cli.options import JsonOption


def command(inventory: InventoryArg, parallel: ParallelOption = 4, json_out: JsonOption = False) -> None:
    """Stop the node on every host of the inventory, with the processes it started; the install stays."""
    from flctl.cloud import fleet

    report(fleet.stop(deployment(inventory, quiet=json_out, parallel=parallel)), json_out, "stop")
