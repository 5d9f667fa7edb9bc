"""The azure target: a Linux VM per host with its own network, made through the Azure SDK
(flctl.cloud.azure_machines, imported only when used), then the kit rolled out to it over SSH.
The host's `azure:` block is AzureMachine."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field, field_validator

from flctl.cloud.machine_plan import Resource
from flctl.cloud.machine_specs import MachineSpec, cidrs
from flctl.cloud.targets.machine_target import MachineTarget

if TYPE_CHECKING:
    from flctl.cloud.deploy_state import DeploymentState
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.machine_provider import CloudProgress, MachineProvider

RESERVED_USERS = {"root", "admin", "administrator", "guest", "user", "test", "sys", "support", "adm",
                  "admin1", "admin2", "user1", "user2", "user3", "test1", "test2", "test3", "owner"}


class AzureMachine(MachineSpec):
    """`azure:` — a Linux VM with its own virtual network, subnet, NSG, public IP and NIC."""

    subscription: str = Field(pattern=r"^[0-9a-fA-F-]{36}$", description="Subscription id.")
    location: str = Field(pattern=r"^[a-z0-9]+$", description="Azure region, e.g. westeurope.")
    resource_group: str = Field(pattern=r"^[-\w._()]{1,89}[-\w_()]$", description="Resource group; created (and "
                                "deleted by destroy) when it does not exist, used as it is when it does.")
    vm_size: str = Field("Standard_B2s", pattern=r"^[A-Za-z0-9_]+$", description="VM size.")
    image: str = Field("Canonical:ubuntu-24_04-lts:server:latest", pattern=r"^[^:\s]+:[^:\s]+:[^:\s]+:[^:\s]+$",
                       description="Marketplace image as publisher:offer:sku:version.")
    address_space: str = Field("10.42.0.0/16", description="Address space of the virtual network flctl creates.")
    subnet_prefix: str = Field("10.42.1.0/24", description="Address prefix of its subnet.")
    disk_gb: int | None = Field(None, ge=30, le=4095, description="OS disk size [default: the image's].")
    arm_endpoint: str = Field("https://management.azure.com", pattern=r"^https://[^\s/]+(:\d+)?/?$",
                              description="Azure Resource Manager endpoint (another one for sovereign clouds or "
                              "Azure Stack).")

    _check_networks = field_validator("address_space", "subnet_prefix")(lambda v: cidrs([v])[0])


class AzureTarget(MachineTarget):
    """Azure: resource group, network security group, virtual network, public IP, NIC and VM."""

    name: ClassVar[str] = "azure"
    spec: ClassVar[type[BaseModel] | None] = AzureMachine
    summary: ClassVar[str] = (
        "Create Azure VMs for the inventory's `provider: azure` hosts, then roll their kits out over SSH.\n\n"
        """    Per machine: the resource group (only if missing), a network security group that lets in only
    SSH from azure.ssh_cidrs (and, on the server, the federation port) and denies everything else,
    a virtual network and subnet, a static public IP, a NIC and a Linux VM that accepts SSH keys
    only (password login disabled); each tagged and recorded in the deployment's state folder.
    Credentials come from DefaultAzureCredential (environment, managed identity, `az login`).
    `flctl deploy destroy INVENTORY` removes exactly what was recorded.
    """)

    def check(self, host: HostSpec) -> None:
        super().check(host)
        if host.user in RESERVED_USERS:
            raise ValueError(f"[user] Azure refuses the user name {host.user!r}; pick another, e.g. flctl")

    def location(self, host: HostSpec) -> str:
        return host.block_as(AzureMachine).location

    def resources(self, host: HostSpec, name: str, allowed: str) -> tuple[Resource, ...]:
        machine = host.block_as(AzureMachine)
        return (Resource("resource_group", machine.resource_group,
                         f"resource group in {machine.location} (created only if missing)"),
                Resource("network_security_group", f"{name}-nsg", f"network security group: inbound only "
                         f"{allowed}; every other inbound connection denied"),
                Resource("virtual_network", f"{name}-vnet", f"virtual network {machine.address_space}, subnet "
                         f"{machine.subnet_prefix}"),
                Resource("public_ip", f"{name}-ip", "static public IP (Standard SKU)"),
                Resource("network_interface", f"{name}-nic", "network interface in the subnet, with the public IP "
                         "and the security group"),
                Resource("virtual_machine", f"{name}-vm", f"{machine.vm_size} Linux VM of {machine.image}, SSH key "
                         f"login only for {host.user} (password authentication disabled)"))

    def machines(self, state: DeploymentState, progress: CloudProgress | None) -> MachineProvider:
        from flctl.cloud.azure_machines import AzureMachines

        logging.getLogger("azure").setLevel(logging.ERROR)  # the SDK's own warnings: flctl says it in one sentence
        return AzureMachines(state, progress)
