"""`flctl deploy upgrade INVENTORY [--parallel N] [--json]`."""

from __future__ import annotations

from flctl.console.cli.deploy.run import AcceptNewOption, InventoryArg, ParallelOption, deployment, report
from flctl.console.cli.options import JsonOption


def command(
    inventory: InventoryArg,
    parallel: ParallelOption = 1,
    accept_new_host_keys: AcceptNewOption = False,
    json_out: JsonOption = False,
) -> None:
    """Move deployed hosts to a new kit or a new flctl; a host unhealthy afterwards is rolled back.

    Only hosts that already run a release are upgraded (one at a time by default). A host whose
    node is not healthy within the inventory's health_timeout_s goes back to its previous release
    and is reported as failed.
    """
    from flctl.cloud import fleet

    results = fleet.upgrade(deployment(inventory, accept_new_host_keys, quiet=json_out, parallel=parallel))
    report(results, json_out, "upgrade")
