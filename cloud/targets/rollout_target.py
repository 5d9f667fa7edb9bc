"""The half of a target that installs and runs the node: the shared Rollout (flctl.cloud.deploy_executor)
over the connector the target gives for each host. ssh, local and the cloud targets build on it.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

from flctl.cloud.targets.base import Applied, Deployment, DeployTarget, Planned

if TYPE_CHECKING:
    from flctl.cloud.connector import Connector
    from flctl.cloud.deploy_executor import HostResult, Rollout
    from flctl.cloud.deploy_state import DeploymentState, Record
    from flctl.cloud.inventory import HostSpec


class RolloutTarget(DeployTarget):
    """A target whose nodes the shared Rollout installs, checks and stops through a Connector."""

    first_boot: ClassVar[bool] = False
    """The target's machines are new: wait for cloud-init before probing them."""

    @abstractmethod
    def connector(self, deployment: Deployment, state: DeploymentState | None, host: HostSpec) -> Connector:
        """A (not yet connected) session with the located `host`."""

    def rollout(self, deployment: Deployment, hosts: list[HostSpec]) -> Rollout:
        """The Rollout of `hosts`, each located (hosts whose machine is not made yet are its `absent`)."""
        from flctl.cloud.deploy_executor import Progress, Rollout
        from flctl.cloud.host_access import resolve
        from flctl.cloud.wheelhouse import default_cache

        resolved = resolve(deployment.inventory, {h.participant for h in hosts})
        return Rollout(resolved.inventory, lambda host: self.connector(deployment, resolved.state, host),
                       deployment.progress or Progress(), deployment.wheel_cache or default_cache(),
                       absent=resolved.absent, first_boot=self.first_boot)

    def plan(self, deployment: Deployment, hosts: list[HostSpec]) -> Planned:
        """Connect, probe and plan each host: its steps, nothing done."""
        return Planned(hosts=self.rollout(deployment, hosts).deploy(dry_run=True, parallel=deployment.parallel))

    def apply(self, deployment: Deployment, hosts: list[HostSpec]) -> Applied:
        if not deployment.roll_out:
            return Applied()
        return Applied(hosts=self.rollout(deployment, hosts).deploy(
            parallel=deployment.parallel, rollback=deployment.upgrade, upgrade=deployment.upgrade))

    def status(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        return self.rollout(deployment, hosts).status(deployment.parallel)

    def stop(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        return self.rollout(deployment, hosts).stop(deployment.parallel)

    def logs(self, deployment: Deployment, host: HostSpec, lines: int) -> str:
        from flctl.cloud.deploy_executor import not_created

        rollout = self.rollout(deployment, [host])
        if rollout.absent:
            raise not_created(host, deployment.inventory.source)
        return rollout.logs(rollout.inventory.hosts[0], lines)

    def destroy(self, deployment: Deployment, state: DeploymentState, records: list[Record]) -> list[
            tuple[Record, str]]:
        """Nothing: such a target makes no resources (the host and its install stay)."""
        return []
