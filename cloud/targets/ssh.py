"""The ssh target: a machine that already exists, at the inventory's `address`, reached over SSH."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flctl.cloud.targets.rollout_target import RolloutTarget

if TYPE_CHECKING:
    from flctl.cloud.connector import Connector
    from flctl.cloud.deploy_state import DeploymentState
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.targets.base import Deployment

CONNECT_ATTEMPTS = 3


class SshTarget(RolloutTarget):
    """An existing host: its address, port, user and key are the inventory's."""

    name: ClassVar[str] = "ssh"
    required: ClassVar[dict[str, str]] = {"address": "'address' is required (or set provider: local, aws or azure)"}
    summary: ClassVar[str] = """Roll the federation out over SSH, to the inventory's hosts and to the machines
    `flctl deploy aws|azure` made, and wait until every node is healthy.

    Per host: check the host key, Python and disk; upload the participant's kit and the wheels of
    this flctl and its dependencies (hosts need no internet); install them offline into a venv;
    verify the kit's signature there; install a systemd service (or a supervised process); start;
    wait until healthy. Running it again changes nothing when nothing changed. One host failing
    does not stop the others; the exit code is then 1 (3 when every failure is a connection failure).
    """

    def connector(self, deployment: Deployment, state: DeploymentState | None, host: HostSpec) -> Connector:
        """SSH, checking host keys against the inventory's known_hosts (new ones with --accept-new-host-keys)."""
        from flctl.cloud.host_access import ssh_connector

        return ssh_connector(deployment.inventory, host, deployment.inventory.known_hosts,
                             deployment.accept_new_host_keys, CONNECT_ATTEMPTS)
