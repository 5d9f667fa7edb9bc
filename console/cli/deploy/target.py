"""`flctl deploy NAME INVENTORY [PARTICIPANT...] [--dry-run] [--machines-only] [--json]`, one command per deploy
target in flctl.cloud.targets.TARGETS (ssh, local, aws, azure…), all through the same code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.deploy.run import AcceptNewOption, InventoryArg, ParallelOption, deployment, failure_code, report
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:
    from flctl.cloud.cloud_rollout import MachineResult
    from flctl.cloud.machine_plan import MachinePlan
    from flctl.cloud.targets.base import Applied, DeployTarget, Planned

ParticipantsArg = Annotated[list[str] | None, typer.Argument(metavar="PARTICIPANT",
                                                             help="Only these participants [default: every host "
                                                                  "of this target].", show_default=False)]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print what would be done and change nothing: the "
                                                              "resources and rules of each machine to make (no "
                                                              "API is called), else each host's steps (after "
                                                              "connecting to it).")]
MachinesOnlyOption = Annotated[bool, typer.Option("--machines-only", help="Targets that make machines: make them "
                                                                          "and stop there; `flctl deploy ssh` "
                                                                          "rolls the kits out later.")]


def command(target: DeployTarget) -> Callable[..., None]:
    """The `flctl deploy NAME` command of `target`; its help is the target's summary."""
    name = target.name

    def deploy(inventory: InventoryArg, participants: ParticipantsArg = None, dry_run: DryRunOption = False,
               machines_only: MachinesOnlyOption = False, parallel: ParallelOption = 4,
               accept_new_host_keys: AcceptNewOption = False, json_out: JsonOption = False) -> None:
        run(name, inventory, participants or [], dry_run, machines_only, parallel, accept_new_host_keys, json_out)

    deploy.__doc__ = target.summary
    deploy.__name__ = f"deploy_{name}"
    return deploy


def run(name: str, inventory: Path, participants: list[str], dry_run: bool, machines_only: bool, parallel: int,
        accept_new_host_keys: bool, json_out: bool) -> None:
    from flctl.cloud import fleet

    found = deployment(inventory, accept_new_host_keys, quiet=json_out, parallel=parallel,
                       machines_only=machines_only)
    if dry_run:
        show_plan(fleet.plan(found, name, participants), json_out)
    else:
        show_applied(fleet.apply(found, name, participants), json_out, machines_only)


def show_plan(planned: Planned, json_out: bool) -> None:
    if json_out:
        terminal.print_json([*(_plan_json(p, planned.recorded) for p in planned.machines),
                             *(r.to_json() for r in planned.hosts)])
        if any(not r.ok for r in planned.hosts):
            raise typer.Exit(failure_code([r.reason for r in planned.hosts if not r.ok]))
        return
    if planned.machines:
        rows = [[p.participant, r.kind.replace("_", " "), r.name,
                 ("exists, checked and kept: " if (p.participant, r.kind) in planned.recorded else "") + r.detail]
                for p in planned.machines for r in p.resources]
        terminal.table(["participant", "resource", "name", "what"], rows, title="machine plan (nothing was changed)")
    if planned.hosts or not planned.machines:
        report(planned.hosts, False, "rollout plan")


def _plan_json(plan: MachinePlan, recorded: set[tuple[str, str]]) -> dict[str, object]:
    return {"participant": plan.participant, "provider": plan.provider, "server": plan.server, "tags": plan.tags,
            "inbound": [{"port": r.port, "cidr": r.cidr, "purpose": r.purpose} for r in plan.rules],
            "resources": [{"kind": r.kind, "name": r.name, "detail": r.detail,
                           "recorded": (plan.participant, r.kind) in recorded} for r in plan.resources]}


def show_applied(applied: Applied, json_out: bool, machines_only: bool) -> None:
    """The machines made (for targets that make them), then each host's rollout; exit 1 or 3 on a failure."""
    machines, results = applied.machines, applied.hosts
    if machines is None:
        if not json_out and results and all(r.status == "unchanged" for r in results):
            terminal.success("no changes: every host already runs its release")
        report(results, json_out, "rollout")
        return
    failed = [m for m in machines if not m.ok]
    if json_out and (machines_only or not results):
        terminal.print_json([m.to_json() for m in machines])
    elif not json_out:
        _machines_table(machines)
    for m in failed:
        terminal.error(m.message)
    if machines_only or not results:
        if failed:
            raise typer.Exit(failure_code([m.reason for m in failed]))
        return
    if json_out:
        terminal.print_json({"machines": [m.to_json() for m in machines], "rollout": [r.to_json() for r in results]})
        if any(not r.ok for r in results) or failed:
            raise typer.Exit(exit_codes.FAILED)
        return
    report(results, False, "rollout")
    if failed:
        raise typer.Exit(failure_code([m.reason for m in failed]))


def _machines_table(machines: list[MachineResult]) -> None:
    terminal.table(["participant", "provider", "status", "address", "resources"],
                   [[m.participant, m.provider, m.status, m.address or "-", "; ".join(m.resources) or "-"]
                    for m in machines], title="machines")
