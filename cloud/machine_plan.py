"""Planning cloud machines (pure): from an inventory host, the exact resources to create, their names,
tags and inbound rules. Nothing here calls a cloud: `--dry-run` prints these plans, and the
providers (flctl.cloud.aws_machines, flctl.cloud.azure_machines) create what they say, in their order.
Which resources a machine needs is its target's (flctl.cloud.targets.machine_target.MachineTarget.resources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flctl.cloud.machine_specs import MachineSpec

if TYPE_CHECKING:
    from flctl.cloud.inventory import HostSpec

SSH_PORT = 22


@dataclass(frozen=True)
class Rule:
    """One inbound allowance: TCP `port` from `cidr`."""

    port: int
    cidr: str
    purpose: str  # ssh or federation

    @property
    def description(self) -> str:
        return f"flctl {self.purpose} from {self.cidr}"


@dataclass(frozen=True)
class Resource:
    """One thing a provider creates for a machine, in creation order."""

    kind: str
    name: str
    detail: str


@dataclass(frozen=True)
class MachinePlan:
    """Everything one cloud machine needs, as a provider will create it."""

    host: HostSpec
    provider: str  # the target that makes it (flctl.cloud.targets)
    project: str
    deployment: str
    server: bool
    federation_port: int | None
    rules: tuple[Rule, ...]
    tags: dict[str, str]
    resources: tuple[Resource, ...] = field(default=())

    @property
    def participant(self) -> str:
        return self.host.participant

    @property
    def base_name(self) -> str:
        return resource_name(self.project, self.participant, self.deployment)


def resource_name(project: str, participant: str, deployment: str, limit: int = 60) -> str:
    """`flctl-<project>-<participant>-<deployment>` with only letters, digits and dashes, at most `limit` long."""
    def clean(text: str) -> str:
        return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-").lower()

    head = f"flctl-{clean(project)}-{clean(participant)}"
    return f"{head[: limit - len(deployment) - 1].rstrip('-')}-{deployment}"


def ingress_rules(machine: MachineSpec, federation_port: int | None) -> tuple[Rule, ...]:
    """SSH from the operator's CIDRs; the federation port (server only) from federation_cidrs; nothing else."""
    rules = [Rule(SSH_PORT, cidr, "ssh") for cidr in machine.ssh_cidrs]
    if federation_port is not None:
        rules += [Rule(federation_port, cidr, "federation") for cidr in machine.federation_cidrs]
    return tuple(rules)


def machine_tags(machine: MachineSpec, project: str, participant: str, deployment: str,
                 name: str) -> dict[str, str]:
    """The user's tags plus the ones destroy and adoption find resources by (those win on a clash)."""
    return {**machine.tags, "Name": name, "flctl:project": project, "flctl:participant": participant,
            "flctl:deployment": deployment}


def plan_machine(host: HostSpec, project: str, deployment: str, server: bool, federation_port: int) -> MachinePlan:
    """The resources `host` (of a target that makes machines: aws, azure) needs."""
    from flctl.cloud import targets
    from flctl.cloud.targets.machine_target import MachineTarget

    target, machine = targets.get(host.provider), host.block
    if not isinstance(target, MachineTarget) or not isinstance(machine, MachineSpec):
        raise ValueError(f"{host.participant} is not a cloud host")
    port = federation_port if server else None
    name = resource_name(project, host.participant, deployment)
    rules = ingress_rules(machine, port)
    tags = machine_tags(machine, project, host.participant, deployment, name)
    allowed = "; ".join(f"tcp/{r.port} from {r.cidr}" for r in rules)
    return MachinePlan(host, target.name, project, deployment, server, port, rules, tags,
                       target.resources(host, name, allowed))
