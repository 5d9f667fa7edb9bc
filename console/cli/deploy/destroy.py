"""`flctl deploy destroy INVENTORY|DIR [--dry-run] [--yes] [--json]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.deploy import k8s_destroy
from flctl.console.cli.deploy.run import deployment
from flctl.console.cli.options import JsonOption


def command(
    inventory: Annotated[Path, typer.Argument(metavar="INVENTORY|DIR", help="The inventory YAML, or the folder "
                                              "`flctl deploy k8s --apply -o DIR` wrote.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    kubeconfig: k8s_destroy.KubeconfigOption = None,
    context: k8s_destroy.ContextOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete exactly the cloud resources this inventory's deployment recorded, and nothing else.

    Instances and VMs first, then addresses, network interfaces, security groups, networks, key
    pairs and resource groups flctl created. Each is forgotten the moment it is gone, so an
    interrupted destroy continues where it stopped when run again, and a second destroy does
    nothing. The generated SSH keys and pinned host keys go with the machines. Given the folder of
    `flctl deploy k8s --apply`: the Kubernetes objects it created or patched (Deployments first).
    """
    from flctl.cloud import fleet

    if inventory.is_dir():
        k8s_destroy.run(inventory, dry_run, yes, kubeconfig, context, json_out)
        return

    found = deployment(inventory, quiet=json_out)
    records = fleet.recorded(found.inventory)
    rows = [[r.participant, r.provider, r.kind.replace("_", " "), r.name, r.id] for r in records]
    if dry_run or not records:
        if json_out:
            terminal.print_json([{"participant": r.participant, "provider": r.provider, "kind": r.kind,
                                  "name": r.name, "id": r.id, "status": "planned"} for r in records])
        elif not records:
            terminal.success(f"nothing to destroy: {found.inventory.state_dir} records no resource")
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
    done = fleet.destroy(found)
    if json_out:
        terminal.print_json([{"participant": r.participant, "provider": r.provider, "kind": r.kind,
                              "name": r.name, "id": r.id, "status": how} for r, how in done])
    else:
        terminal.table(["participant", "provider", "resource", "name", "status"],
                       [[r.participant, r.provider, r.kind.replace("_", " "), r.name, how] for r, how in done],
                       title="destroy")
        terminal.success(f"destroyed: {len(done)} resources; nothing of this deployment is left")
