"""The local target: the node runs on this machine, as this user, installed and supervised like on a host
(releases, venv, supervisor or systemd), through a connector that runs the commands here instead of
over SSH (flctl.cloud.local_connector)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flctl.cloud.targets.rollout_target import RolloutTarget

if TYPE_CHECKING:
    from flctl.cloud.connector import Connector
    from flctl.cloud.deploy_state import DeploymentState
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.targets.base import Deployment


class LocalTarget(RolloutTarget):
    """This machine: no address, no SSH."""

    name: ClassVar[str] = "local"
    summary: ClassVar[str] = """Install and start the inventory's `provider: local` nodes on this machine, and
    wait until each is healthy.

    The same rollout as `flctl deploy ssh` (wheels installed offline into a venv, the kit's signature
    verified, a supervised process or a systemd service, a health check), with the commands run here
    instead of over SSH. Running it again changes nothing when nothing changed.
    """

    def check(self, host: HostSpec) -> None:
        if host.address is not None:
            raise ValueError("[address] 'address' is not allowed with provider: local; the node runs on this "
                             "machine (use provider: ssh to reach another)")

    def where(self, host: HostSpec) -> str:
        return "localhost"

    @property
    def where_unaddressed(self) -> str:
        return "localhost"

    def connector(self, deployment: Deployment, state: DeploymentState | None, host: HostSpec) -> Connector:
        from flctl.cloud.local_connector import LocalConnector

        return LocalConnector(name=host.participant)
