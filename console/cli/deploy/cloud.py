"""`flctl deploy aws|azure INVENTORY [PARTICIPANT...] [--dry-run] [--machines-only] [--json]`."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.deploy.run import (
    AcceptNewOption,
    InventoryArg,
    ParallelOption,
    failure_code,
    make_rollout,
    report,
)
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:
    from flctl.cloud.cloud_rollout import MachineResult
    from flctl.cloud.deploy_state import Record
    from flctl.cloud.machine_plan import MachinePlan

ParticipantsArg = Annotated[list[str] | None, typer.Argument(help="Only these participants [default: every host "
                                                                  "of this provider].", show_default=False)]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the resources each machine needs and the "
                                                              "rules they get; call no API, change nothing.")]
MachinesOnlyOption = Annotated[bool, typer.Option("--machines-only", help="Create the machines and stop there; "
                                                                          "`flctl deploy ssh` rolls the kits out "
                                                                          "later.")]


def _progress(quiet: bool) -> Any:
    from flctl.cloud.machine_provider import CloudProgress

    class Lines(CloudProgress):
        lock = threading.Lock()

        def resource_ready(self, participant: str, kind: str, name: str, how: str) -> None:
            self._say(f"{participant}: {kind.replace('_', ' ')} {name}: {how}")

        def resource_deleted(self, record: Record, how: str) -> None:
            self._say(f"{record.participant}: {record.kind.replace('_', ' ')} {record.name}: {how}")

        def _say(self, line: str) -> None:
            if not quiet:
                with self.lock:
                    terminal.info(line)

    return Lines()


def print_plans(plans: list[MachinePlan], recorded: set[tuple[str, str]], json_out: bool) -> None:
    if json_out:
        terminal.print_json([{"participant": p.participant, "provider": p.provider, "server": p.server,
                              "tags": p.tags,
                              "inbound": [{"port": r.port, "cidr": r.cidr, "purpose": r.purpose} for r in p.rules],
                              "resources": [{"kind": r.kind, "name": r.name, "detail": r.detail,
                                             "recorded": (p.participant, r.kind) in recorded}
                                            for r in p.resources]} for p in plans])
        return
    rows = [[p.participant, r.kind.replace("_", " "), r.name,
             ("exists, checked and kept: " if (p.participant, r.kind) in recorded else "") + r.detail]
            for p in plans for r in p.resources]
    terminal.table(["participant", "resource", "name", "what"], rows, title="machine plan (nothing was changed)")


def run(provider: str, inventory: Path, participants: list[str] | None, dry_run: bool, machines_only: bool,
        parallel: int, accept_new_host_keys: bool, json_out: bool) -> None:
    from flctl.cloud.cloud_rollout import CloudRollout, default_provider
    from flctl.cloud.inventory import load_inventory

    logging.getLogger("azure").setLevel(logging.ERROR)  # the SDKs' own warnings: flctl says it in one sentence
    inv = load_inventory(inventory)
    cloud = CloudRollout(inv, default_provider, _progress(json_out))
    state, plans = cloud.plan(provider, participants or [])
    if dry_run:
        print_plans(plans, {(r.participant, r.kind) for r in state.records}, json_out)
        return
    machines = cloud.create(provider, participants or [])
    ready = {m.participant for m in machines if m.ok}
    if json_out and machines_only:
        terminal.print_json([m.to_json() for m in machines])
    elif not json_out:
        _machines_table(machines)
    for m in machines:
        if not m.ok:
            terminal.error(m.message)
    if machines_only or not ready:
        if any(not m.ok for m in machines):
            raise typer.Exit(failure_code([m.reason for m in machines if not m.ok]))
        return
    rollout = make_rollout(inventory, accept_new_host_keys, quiet=json_out, only=ready)
    results = rollout.deploy(parallel=parallel)
    if json_out:
        terminal.print_json({"machines": [m.to_json() for m in machines], "rollout": [r.to_json() for r in results]})
        if any(not r.ok for r in results) or any(not m.ok for m in machines):
            raise typer.Exit(exit_codes.FAILED)
        return
    report(results, False, "rollout")
    if any(not m.ok for m in machines):
        raise typer.Exit(failure_code([m.reason for m in machines if not m.ok]))


def _machines_table(machines: list[MachineResult]) -> None:
    terminal.table(["participant", "provider", "status", "address", "resources"],
                   [[m.participant, m.provider, m.status, m.address or "-", "; ".join(m.resources) or "-"]
                    for m in machines], title="machines")


def aws(inventory: InventoryArg, participants: ParticipantsArg = None, dry_run: DryRunOption = False,
        machines_only: MachinesOnlyOption = False, parallel: ParallelOption = 4,
        accept_new_host_keys: AcceptNewOption = False, json_out: JsonOption = False) -> None:
    """Create EC2 instances for the inventory's `provider: aws` hosts, then roll their kits out over SSH.

    Per machine: a security group that lets in only SSH from aws.ssh_cidrs (and, on the server, the
    federation port from aws.federation_cidrs), a key pair from an ed25519 key made here (or
    aws.key_name), the instance (IMDSv2 only), an Elastic IP if asked; each tagged with the project,
    the participant and the deployment, and recorded in the deployment's state folder the moment
    it exists. Running it again reuses what exists. Credentials come from boto3's usual chain
    (AWS_PROFILE, environment, instance role); AWS_ENDPOINT_URL points it at another endpoint.
    `flctl deploy destroy INVENTORY` removes exactly what was recorded.
    """
    run("aws", inventory, participants, dry_run, machines_only, parallel, accept_new_host_keys, json_out)


def azure(inventory: InventoryArg, participants: ParticipantsArg = None, dry_run: DryRunOption = False,
          machines_only: MachinesOnlyOption = False, parallel: ParallelOption = 4,
          accept_new_host_keys: AcceptNewOption = False, json_out: JsonOption = False) -> None:
    """Create Azure VMs for the inventory's `provider: azure` hosts, then roll their kits out over SSH.

    Per machine: the resource group (only if missing), a network security group that lets in only
    SSH from azure.ssh_cidrs (and, on the server, the federation port) and denies everything else,
    a virtual network and subnet, a static public IP, a NIC and a Linux VM that accepts SSH keys
    only (password login disabled); each tagged and recorded in the deployment's state folder.
    Credentials come from DefaultAzureCredential (environment, managed identity, `az login`).
    `flctl deploy destroy INVENTORY` removes exactly what was recorded.
    """
    run("azure", inventory, participants, dry_run, machines_only, parallel, accept_new_host_keys, json_out)
