"""What an inventory says about a machine flctl creates in a cloud: the `aws:` and `azure:` blocks of a host.

Typed and described like the rest of the inventory (flctl.cloud.inventory); the descriptions are the docs.
Networking is least-privilege by construction: SSH only from the operator's CIDRs, the federation
port only on the server, nothing else inbound.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_TAG_KEY = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,127}$")
DEFAULT_USER_DATA = "#cloud-config\npackages: [python3-venv]\n"


def _cidrs(values: list[str]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value, strict=True)))
        except ValueError:
            raise ValueError(f"{value!r} is not a CIDR block like 203.0.113.7/32 (host bits must be zero)") from None
    return out


def _tags(tags: dict[str, str]) -> dict[str, str]:
    for key in tags:
        if not _TAG_KEY.match(key) or key.lower().startswith(("aws:", "flctl:")):
            raise ValueError(f"tag key {key!r} is not allowed: 1-127 letters, digits or ' _.:/=+@-', "
                             "not starting with aws: or flctl: (flctl sets those itself)")
    return tags


class _Machine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ssh_cidrs: list[str] = Field(min_length=1, description="CIDR blocks allowed to reach SSH (port 22): the "
                                 "operator's own address, e.g. 203.0.113.7/32. Nothing else may connect to SSH.")
    federation_cidrs: list[str] = Field(["0.0.0.0/0"], min_length=1, description="Server only: CIDR blocks allowed "
                                        "to reach the federation port (every connection is still mutual TLS); "
                                        "narrow it to the sites' addresses when they are known.")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags for every resource created (flctl "
                                 "adds flctl:project, flctl:participant and flctl:deployment).")
    user_data: str = Field(DEFAULT_USER_DATA, description="cloud-init user data run at first boot; the default "
                           "installs python3-venv, which the rollout's virtual environment needs on Debian/Ubuntu.")

    _check_cidrs = field_validator("ssh_cidrs", "federation_cidrs")(_cidrs)
    _check_tags = field_validator("tags")(_tags)


class AwsMachine(_Machine):
    """`aws:` — an EC2 instance with its own security group (and key pair, and optionally an Elastic IP)."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="AWS region, e.g. eu-west-1.")
    instance_type: str = Field("t3.medium", pattern=r"^[a-z0-9-]+\.[a-z0-9]+$", description="EC2 instance type.")
    image: str = Field(pattern=r"^(ami-[0-9a-f]{8,17}|resolve:ssm:/[A-Za-z0-9/._-]+)$",
                       description="AMI id, or `resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/"
                       "current/amd64/hvm/ebs-gp3/ami-id` for the latest Ubuntu 24.04.")
    vpc: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="VPC id [default: the subnet's VPC, "
                            "else the region's default VPC].")
    subnet: str | None = Field(None, pattern=r"^subnet-[0-9a-f]{8,17}$", description="Subnet id [default: one of "
                               "the VPC's, chosen by EC2].")
    key_name: str | None = Field(None, description="An existing EC2 key pair to use; the host's key_file must then "
                                 "hold its private key. Without it flctl makes an ed25519 key here and imports only "
                                 "the public half.")
    elastic_ip: bool = Field(False, description="Give the instance an Elastic IP, so its address survives a stop "
                             "and can stand in a DNS record.")
    disk_gb: int | None = Field(None, ge=8, le=16384, description="Size of the root volume [default: the image's].")
    connect: str = Field("public", pattern=r"^(public|private)$", description="Reach the instance over its public "
                         "or its private address (private when the operator is inside the VPC).")


class AzureMachine(_Machine):
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

    _check_networks = field_validator("address_space", "subnet_prefix")(lambda v: _cidrs([v])[0])
