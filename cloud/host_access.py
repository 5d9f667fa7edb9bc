"""How the SSH rollout reaches each inventory host: an ssh host at its address, a cloud host at the address
its deployment recorded, with the key flctl made for it and its own pinned known_hosts.

A machine flctl created is trusted on first contact (its key is then pinned in the deployment's
known_hosts; a later change is refused like any other); an ssh host follows --accept-new-host-keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from flctl.cloud.connector import Connector
from flctl.cloud.deploy_state import DeploymentState
from flctl.cloud.inventory import HostSpec, Inventory

CLOUD_CONNECT_ATTEMPTS = 12  # a new VM's sshd comes up a minute or so after the API says it runs


@dataclasses.dataclass(frozen=True)
class ResolvedInventory:
    """The inventory with every cloud host's address filled in; `absent` lists cloud hosts not created yet."""

    inventory: Inventory
    state: DeploymentState | None
    absent: list[HostSpec]


def resolve(inventory: Inventory, only: set[str] | None = None) -> ResolvedInventory:
    """Fill in the cloud hosts' addresses from the deployment state (`only`: keep just these participants)."""
    state = DeploymentState.load(inventory.state_dir)
    hosts, absent = [], []
    for host in inventory.hosts:
        if only is not None and host.participant not in only:
            continue
        if host.provider == "ssh":
            hosts.append(host)
            continue
        machine = state.machines.get(host.participant) if state else None
        if machine is None:
            absent.append(host)
            continue
        hosts.append(host.model_copy(update={"address": machine.address,
                                             "key_file": machine.key_file or host.key_file}))
    spec = inventory.spec.model_copy(update={"hosts": hosts})
    return ResolvedInventory(dataclasses.replace(inventory, spec=spec), state, absent)


def connector_factory(resolved: ResolvedInventory, accept_new: bool) -> Callable[[HostSpec], Connector]:
    """Connectors over SSH for the hosts of `resolved.inventory`."""
    from flctl.cloud.ssh_connector import SshConnector, SshOptions

    inv = resolved.inventory

    def make(host: HostSpec) -> Connector:
        assert host.address is not None
        cloud = host.provider != "ssh" and resolved.state is not None
        known_hosts = resolved.state.known_hosts if cloud and resolved.state else inv.known_hosts
        given: dict[str, object] = {"user": host.user, "key_file": inv.key_file(host)}
        if "port" in host.model_fields_set:
            given["port"] = host.port
        options = SshOptions.from_config(inv.ssh_config, host.address, given, known_hosts=known_hosts,
                                         accept_new_host_keys=accept_new or cloud,
                                         connect_attempts=CLOUD_CONNECT_ATTEMPTS if cloud else 3)
        return SshConnector(options, name=host.participant)

    return make
