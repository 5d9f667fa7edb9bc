"""What every cloud target's inventory block says about a machine flctl creates: who may reach it, its tags.

Each cloud's block (`aws:`, `azure:`) extends MachineSpec in its target module (flctl.cloud.targets.aws…);
typed and described like the rest of the inventory (flctl.cloud.inventory); the descriptions are the docs.
Networking is least-privilege by construction: SSH only from the operator's CIDRs, the federation
port only on the server, nothing else inbound.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_TAG_KEY = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,127}$")
DEFAULT_USER_DATA = "#cloud-config\npackages: [python3-venv]\n"


def cidrs(values: list[str]) -> list[str]:
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


class MachineSpec(BaseModel):
    """The fields every cloud machine block has."""

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

    _check_cidrs = field_validator("ssh_cidrs", "federation_cidrs")(cidrs)
    _check_tags = field_validator("tags")(_tags)
