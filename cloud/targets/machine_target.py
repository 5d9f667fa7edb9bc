"""The half of a cloud target that makes the machine: plan its resources (pure), create them through the
target's MachineProvider (flctl.cloud.machine_provider), delete what was recorded. The node on the
machine is then rolled out over SSH like any ssh host's (flctl.cloud.targets.rollout_target).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

from flctl.cloud.targets.base import Applied, Deployment, Planned
from flctl.cloud.targets.rollout_target import RolloutTarget

if TYPE_CHECKING:
    from flctl.cloud.connector import Connector
    from flctl.cloud.deploy_state import DeploymentState, Record
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.machine_plan import Resource
    from flctl.cloud.machine_provider import CloudProgress, MachineProvider

CONNECT_ATTEMPTS = 12  # a new VM's sshd comes up a minute or so after the API says it runs


class MachineTarget(RolloutTarget):
    """A target that makes a machine per host in a cloud, then rolls the kit out to it over SSH."""

    reached_through: ClassVar[str | None] = "ssh"
    first_boot: ClassVar[bool] = True

    @abstractmethod
    def machines(self, state: DeploymentState, progress: CloudProgress | None) -> MachineProvider:
        """The cloud's MachineProvider (its SDK imported only now), recording into `state`."""

    @abstractmethod
    def resources(self, host: HostSpec, name: str, allowed: str) -> tuple[Resource, ...]:
        """What `host`'s machine needs, in creation order (`name`: its base name; `allowed`: its inbound rules)."""

    @abstractmethod
    def location(self, host: HostSpec) -> str:
        """The region (or location) the host's block names."""

    def check(self, host: HostSpec) -> None:
        if host.address is not None:
            raise ValueError(f"[address] 'address' is not allowed with provider: {self.name}; the machine's "
                             "address comes from the deployment")

    def where(self, host: HostSpec) -> str:
        return host.address or f"{self.name}:{self.location(host)}"

    def machine_of(self, host: HostSpec) -> str:
        return f"{self.name}:{host.participant}"  # each host gets a machine of its own

    def locate(self, host: HostSpec, state: DeploymentState | None) -> HostSpec | None:
        machine = state.machines.get(host.participant) if state else None
        if machine is None:
            return None
        return host.model_copy(update={"address": machine.address, "key_file": machine.key_file or host.key_file})

    def connector(self, deployment: Deployment, state: DeploymentState | None, host: HostSpec) -> Connector:
        """SSH, checking host keys against the deployment's own known_hosts (a new machine's key is pinned)."""
        from flctl.cloud.host_access import ssh_connector

        known = state.known_hosts if state is not None else deployment.inventory.known_hosts
        return ssh_connector(deployment.inventory, host, known, True, CONNECT_ATTEMPTS)

    def plan(self, deployment: Deployment, hosts: list[HostSpec]) -> Planned:
        """Every resource each machine needs and the rules it gets; no API is called. Without `make_machines`:
        the rollout's plan for the machines already made."""
        if not deployment.make_machines:
            return super().plan(deployment, hosts)
        from flctl.cloud.cloud_rollout import CloudRollout, machine_provider

        cloud = CloudRollout(deployment.inventory, machine_provider)
        state, plans = cloud.plan(self.name, [h.participant for h in hosts])
        return Planned(machines=plans, recorded={(r.participant, r.kind) for r in state.records})

    def apply(self, deployment: Deployment, hosts: list[HostSpec]) -> Applied:
        """Make each machine (one after another, the server first), then roll the kits out to those made."""
        if not deployment.make_machines:
            return super().apply(deployment, hosts)
        from flctl.cloud.cloud_rollout import CloudRollout, machine_provider

        cloud = CloudRollout(deployment.inventory, machine_provider, deployment.machine_progress or _quiet())
        machines = cloud.create(self.name, [h.participant for h in hosts])
        ready = {m.participant for m in machines if m.ok}
        if not deployment.roll_out or not ready:
            return Applied(machines)
        return Applied(machines, super().apply(deployment, [h for h in hosts if h.participant in ready]).hosts)

    def destroy(self, deployment: Deployment, state: DeploymentState, records: list[Record]) -> list[
            tuple[Record, str]]:
        from flctl.cloud.cloud_rollout import destroy_records

        return destroy_records(self.machines(state, deployment.machine_progress), state, records,
                               deployment.machine_progress or _quiet())


def _quiet() -> CloudProgress:
    from flctl.cloud.machine_provider import CloudProgress

    return CloudProgress()
