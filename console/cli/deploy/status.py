"""`flctl deploy status INVENTORY [--json]`."""

from __future__ import annotations

from flctl.console.cli.deploy.run import InventoryArg, ParallelOption, make_rollout, report
from flctl.console.cli.options import JsonOption


def command(inventory: InventoryArg, parallel: ParallelOption = 4, json_out: JsonOption = False) -> None:
    """Show, per host, the release deployed, whether its node runs and whether it is healthy (exit 1 if not)."""
    report(make_rollout(inventory, quiet=True).status(parallel), json_out, "deployment status")
