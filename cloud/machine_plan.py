"""Planning cloud machines (pure): from an inventory host, the exact resources to create, their names,
tags and inbound rules. Nothing here calls a cloud: `--dry-run` prints these plans, and the
providers (flctl.cloud.aws_machines, flctl.cloud.azure_machines) create what they say, in their order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flctl.cloud.inventory import HostSpec
from flctl.cloud.machine_specs import AwsMachine, AzureMachine

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
    provider: str  # aws or azure
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


def ingress_rules(machine: AwsMachine | AzureMachine, federation_port: int | None) -> tuple[Rule, ...]:
    """SSH from the operator's CIDRs; the federation port (server only) from federation_cidrs; nothing else."""
    rules = [Rule(SSH_PORT, cidr, "ssh") for cidr in machine.ssh_cidrs]
    if federation_port is not None:
        rules += [Rule(federation_port, cidr, "federation") for cidr in machine.federation_cidrs]
    return tuple(rules)


def machine_tags(machine: AwsMachine | AzureMachine, project: str, participant: str, deployment: str,
                 name: str) -> dict[str, str]:
    """The user's tags plus the ones destroy and adoption find resources by (those win on a clash)."""
    return {**machine.tags, "Name": name, "flctl:project": project, "flctl:participant": participant,
            "flctl:deployment": deployment}


def plan_machine(host: HostSpec, project: str, deployment: str, server: bool, federation_port: int) -> MachinePlan:
    """The resources `host` (provider aws or azure) needs."""
    machine = host.cloud
    if machine is None:
        raise ValueError(f"{host.participant} is not a cloud host")
    port = federation_port if server else None
    name = resource_name(project, host.participant, deployment)
    rules = ingress_rules(machine, port)
    tags = machine_tags(machine, project, host.participant, deployment, name)
    allowed = "; ".join(f"tcp/{r.port} from {r.cidr}" for r in rules)
    if isinstance(machine, AwsMachine):
        vpc = machine.vpc or ("the subnet's VPC" if machine.subnet else "the default VPC")
        res = [Resource("security_group", name, f"security group in {vpc}: inbound only {allowed}")]
        if machine.key_name is None:
            res.append(Resource("key_pair", name, "key pair from a new ed25519 key (its private half stays here)"))
        disk = f", {machine.disk_gb} GB root volume" if machine.disk_gb else ""
        res.append(Resource("instance", name, f"{machine.instance_type} instance of {machine.image} in "
                            f"{machine.region}{disk}, IMDSv2 only, key pair "
                            f"{machine.key_name or name}"))
        if machine.elastic_ip:
            res.append(Resource("address", name, "Elastic IP associated with the instance"))
        return MachinePlan(host, "aws", project, deployment, server, port, rules, tags, tuple(res))
    assert isinstance(machine, AzureMachine)
    res = [Resource("resource_group", machine.resource_group,
                    f"resource group in {machine.location} (created only if missing)"),
           Resource("network_security_group", f"{name}-nsg", f"network security group: inbound only {allowed}; "
                    "every other inbound connection denied"),
           Resource("virtual_network", f"{name}-vnet", f"virtual network {machine.address_space}, subnet "
                    f"{machine.subnet_prefix}"),
           Resource("public_ip", f"{name}-ip", "static public IP (Standard SKU)"),
           Resource("network_interface", f"{name}-nic", "network interface in the subnet, with the public IP "
                    "and the security group"),
           Resource("virtual_machine", f"{name}-vm", f"{machine.vm_size} Linux VM of {machine.image}, SSH key "
                    f"login only for {host.user} (password authentication disabled)")]
    return MachinePlan(host, "azure", project, deployment, server, port, rules, tags, tuple(res))
