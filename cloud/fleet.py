"""Operations over a whole inventory: each host is handed to its deploy target (flctl.cloud.targets), the
group holding the server first, and the results come back in the inventory's order. The CLI's
`flctl deploy …` commands call these and nothing else of the targets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from flctl.cloud import targets
from flctl.cloud.cloud_rollout import destroy_deployment, select_hosts
from flctl.cloud.deploy_errors import NotInInventory
from flctl.cloud.deploy_executor import HostResult
from flctl.cloud.deploy_state import DeploymentState, Record
from flctl.cloud.inventory import HostSpec, Inventory
from flctl.cloud.targets.base import Applied, Deployment, DeployTarget, Planned
from flctl.provisioner.errors import ProvisionError
from flctl.provisioner.kit_info import read_kit


def plan(deployment: Deployment, name: str, participants: list[str]) -> Planned:
    """What `flctl deploy NAME` would do to the hosts of target `name` (and those reached through it)."""
    out = Planned()
    for target, hosts in _groups(deployment.inventory, select_hosts(deployment.inventory, name, participants,
                                                                    through=True)):
        planned = target.plan(_for(deployment, target, name), hosts)
        out.machines += planned.machines
        out.recorded |= planned.recorded
        out.hosts += planned.hosts
    out.hosts = _in_order(deployment.inventory, out.hosts)
    return out


def apply(deployment: Deployment, name: str, participants: list[str]) -> Applied:
    """`flctl deploy NAME`: target `name` makes its machines (if it makes any) and every selected host is
    rolled out; hosts of targets reached through `name` are rolled out to the machines already made."""
    machines = None
    hosts: list[HostResult] = []
    for target, group in _groups(deployment.inventory, select_hosts(deployment.inventory, name, participants,
                                                                    through=True)):
        applied = target.apply(_for(deployment, target, name), group)
        if applied.machines is not None:
            machines = [*(machines or []), *applied.machines]
        hosts += applied.hosts
    return Applied(machines, _in_order(deployment.inventory, hosts))


def upgrade(deployment: Deployment) -> list[HostResult]:
    """Every host already running a release moves to the current kit and flctl; no machine is made."""
    moved = dataclasses.replace(deployment, make_machines=False, upgrade=True)
    return _each(deployment, lambda target, hosts: target.apply(moved, hosts).hosts)


def status(deployment: Deployment) -> list[HostResult]:
    return _each(deployment, lambda target, hosts: target.status(deployment, hosts))


def stop(deployment: Deployment) -> list[HostResult]:
    return _each(deployment, lambda target, hosts: target.stop(deployment, hosts))


def logs(deployment: Deployment, name: str, lines: int) -> tuple[HostSpec, str]:
    """The host running participant (or at address) `name`, and the end of its node's logs."""
    try:
        host = deployment.inventory.host(name)
    except KeyError:
        names = ", ".join(h.participant for h in deployment.inventory.hosts)
        raise NotInInventory(f"no host '{name}' in {deployment.inventory.source}; hosts: {names}") from None
    return host, targets.get(host.provider).logs(deployment, host, lines)


def recorded(inventory: Inventory) -> list[Record]:
    """Every resource the inventory's deployment recorded (what destroy would delete)."""
    state = DeploymentState.load(inventory.state_dir)
    return [] if state is None else list(state.records)


def destroy(deployment: Deployment) -> list[tuple[Record, str]]:
    """Each target deletes what it recorded; the machines, keys and host keys are forgotten after."""
    return destroy_deployment(deployment.inventory, lambda provider, state, records: targets.get(provider).destroy(
        deployment, state, records))


def _for(deployment: Deployment, target: DeployTarget, name: str) -> Deployment:
    """Only the target the command names makes machines; the others roll out to those already made."""
    return dataclasses.replace(deployment, make_machines=deployment.make_machines and target.name == name)


def _each(deployment: Deployment, work: Callable[[DeployTarget, list[HostSpec]], list[HostResult]]) \
        -> list[HostResult]:
    results: list[HostResult] = []
    for target, hosts in _groups(deployment.inventory, deployment.inventory.hosts):
        results += work(target, hosts)
    return _in_order(deployment.inventory, results)


def _groups(inventory: Inventory, hosts: list[HostSpec]) -> list[tuple[DeployTarget, list[HostSpec]]]:
    """`hosts` by target, in the table's order, the group holding the server first (sites need it up)."""
    by_name: dict[str, list[HostSpec]] = {}
    for host in hosts:
        by_name.setdefault(host.provider, []).append(host)
    order = list(targets.TARGETS)
    groups = sorted(by_name.items(), key=lambda item: (not any(_serves(inventory, h) for h in item[1]),
                                                        order.index(item[0])))
    return [(targets.get(name), group) for name, group in groups]


def _serves(inventory: Inventory, host: HostSpec) -> bool:
    try:
        return read_kit(inventory.kit(host.participant)).kind == "server"
    except (ProvisionError, OSError):
        return False  # an unreadable kit fails later, with its own message


def _in_order(inventory: Inventory, results: list[HostResult]) -> list[HostResult]:
    order = {h.participant: i for i, h in enumerate(inventory.hosts)}
    return sorted(results, key=lambda r: order.get(r.participant, len(order)))
