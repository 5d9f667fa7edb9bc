"""`flctl deploy status INVENTORY [--json]`."""

from __future__ import annotations

from flctl.console.cli.deploy.run import InventoryArg, ParallelOption, deployment, report
from flctl.console.cli.options import JsonOption


def command(inventory: InventoryArg, parallel: ParallelOption = 4, json_out: JsonOption = False) -> None:
    """Show, per host, the release deployed, whether its node runs and whether it is healthy (exit 1 if not)."""
    from flctl.cloud import fleet

    report(fleet.status(deployment(inventory, quiet=True, parallel=parallel)), json_out, "deployment status")
