"""`flctl deploy destroy INVENTORY [--dry-run] [--yes] [--json]`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.deploy.cloud import _progress
from flctl.console.cli.deploy.run import InventoryArg
from flctl.console.cli.options import JsonOption


def command(
    inventory: InventoryArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Delete exactly the cloud resources this inventory's deployment recorded, and nothing else.

    Instances and VMs first, then addresses, network interfaces, security groups, networks, key
    pairs and resource groups flctl created. Each is forgotten the moment it is gone, so an
    interrupted destroy continues where it stopped when run again, and a second destroy does
    nothing. The generated SSH keys and pinned host keys go with the machines.
    """
    from flctl.cloud.cloud_rollout import CloudRollout, default_provider
    from flctl.cloud.inventory import load_inventory

    cloud = CloudRollout(load_inventory(inventory), default_provider, _progress(json_out))
    plan = cloud.destroy_plan()
    rows = [[r.participant, r.provider, r.kind.replace("_", " "), r.name, r.id] for r in plan.records]
    if dry_run or not plan.records:
        if json_out:
            terminal.print_json([{"participant": r.participant, "provider": r.provider, "kind": r.kind,
                                  "name": r.name, "id": r.id, "status": "planned"} for r in plan.records])
        elif not plan.records:
            terminal.success(f"nothing to destroy: {cloud.inventory.state_dir} records no resource")
        else:
            terminal.table(["participant", "provider", "resource", "name", "id"], rows,
                           title="destroy plan (nothing was deleted)")
        return
    if not yes:
        if not sys.stdin.isatty():
            terminal.abort(f"destroy would delete {len(rows)} resources; pass --yes to confirm",
                           exit_codes.BAD_INPUT)
        terminal.table(["participant", "provider", "resource", "name", "id"], rows, title="to delete")
        if not typer.confirm(f"Delete these {len(rows)} resources?", default=False):
            terminal.abort("nothing was deleted", exit_codes.FAILED)
    done = cloud.destroy()
    if json_out:
        terminal.print_json([{"participant": r.participant, "provider": r.provider, "kind": r.kind,
                              "name": r.name, "id": r.id, "status": how} for r, how in done])
    else:
        terminal.table(["participant", "provider", "resource", "name", "status"],
                       [[r.participant, r.provider, r.kind.replace("_", " "), r.name, how] for r, how in done],
                       title="destroy")
        terminal.success(f"destroyed: {len(done)} resources; nothing of this deployment is left")
