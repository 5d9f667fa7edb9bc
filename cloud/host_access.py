"""How a rollout reaches each inventory host: each host's target locates it (an ssh host at its address, a
made machine at the address its deployment recorded, with the key flctl made for it), and an SSH
connector is built from the inventory's ssh_config, the host's fields and the known_hosts to check.

A machine flctl created is trusted on first contact (its key is then pinned in the deployment's
known_hosts; a later change is refused like any other); an ssh host follows --accept-new-host-keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flctl.cloud import targets
from flctl.cloud.connector import Connector
from flctl.cloud.deploy_state import DeploymentState
from flctl.cloud.inventory import HostSpec, Inventory


@dataclasses.dataclass(frozen=True)
class ResolvedInventory:
    """The inventory with every made machine's address filled in; `absent` lists hosts whose machine is not
    made yet."""

    inventory: Inventory
    state: DeploymentState | None
    absent: list[HostSpec]


def resolve(inventory: Inventory, only: set[str] | None = None) -> ResolvedInventory:
    """Locate every host through its target (`only`: keep just these participants)."""
    state = DeploymentState.load(inventory.state_dir)
    hosts, absent = [], []
    for host in inventory.hosts:
        if only is not None and host.participant not in only:
            continue
        located = targets.get(host.provider).locate(host, state)
        if located is None:
            absent.append(host)
        else:
            hosts.append(located)
    spec = inventory.spec.model_copy(update={"hosts": hosts})
    return ResolvedInventory(dataclasses.replace(inventory, spec=spec), state, absent)


def ssh_connector(inventory: Inventory, host: HostSpec, known_hosts: Path, accept_new: bool,
                  connect_attempts: int) -> Connector:
    """A connector over SSH to `host` (paramiko, imported only now)."""
    from flctl.cloud.ssh_connector import SshConnector, SshOptions

    assert host.address is not None
    given: dict[str, object] = {"user": host.user, "key_file": inventory.key_file(host)}
    if "port" in host.model_fields_set:
        given["port"] = host.port
    options = SshOptions.from_config(inventory.ssh_config, host.address, given, known_hosts=known_hosts,
                                     accept_new_host_keys=accept_new, connect_attempts=connect_attempts)
    return SshConnector(options, name=host.participant)
