"""Deploy targets: one module per way to run a node, and TARGETS, the one table that names them.

Adding a target is its module and one line in TARGETS: the inventory's `provider:` values and
blocks, the `flctl deploy NAME` commands and every operation over an inventory (flctl.cloud.fleet)
come from this table. A target module imports its SDK (boto3, azure, paramiko) only when used.
"""

from __future__ import annotations

from flctl.cloud.deploy_errors import DeployError
from flctl.cloud.targets.aws import AwsTarget
from flctl.cloud.targets.azure import AzureTarget
from flctl.cloud.targets.base import DeployTarget
from flctl.cloud.targets.local import LocalTarget
from flctl.cloud.targets.slurm import SlurmTarget
from flctl.cloud.targets.ssh import SshTarget

DEFAULT = "ssh"
"""The target of an inventory host that names no `provider`."""

TARGETS: dict[str, DeployTarget] = {target.name: target for target in (
    SshTarget(),
    LocalTarget(),
    AwsTarget(),
    AzureTarget(),
    SlurmTarget(),
)}


def names() -> list[str]:
    return list(TARGETS)


def get(name: str) -> DeployTarget:
    """The target registered as `name`; DeployError naming the known ones when there is none."""
    try:
        return TARGETS[name]
    except KeyError:
        raise DeployError(f"no deploy target '{name}'; known targets: {', '.join(TARGETS)}") from None
