"""The aws target: an EC2 instance per host, made through boto3 (flctl.cloud.aws_machines, imported only when
used), then the kit rolled out to it over SSH. The host's `aws:` block is AwsMachine."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

from flctl.cloud.machine_plan import Resource
from flctl.cloud.machine_specs import MachineSpec
from flctl.cloud.targets.machine_target import MachineTarget

if TYPE_CHECKING:
    from flctl.cloud.deploy_state import DeploymentState
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.machine_provider import CloudProgress, MachineProvider


class AwsMachine(MachineSpec):
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


class AwsTarget(MachineTarget):
    """EC2: a security group, a key pair, the instance, an optional Elastic IP."""

    name: ClassVar[str] = "aws"
    spec: ClassVar[type[BaseModel] | None] = AwsMachine
    summary: ClassVar[str] = (
        "Create EC2 instances for the inventory's `provider: aws` hosts, then roll their kits out over SSH.\n\n"
        """    Per machine: a security group that lets in only SSH from aws.ssh_cidrs (and, on the server, the
    federation port from aws.federation_cidrs), a key pair from an ed25519 key made here (or
    aws.key_name), the instance (IMDSv2 only), an Elastic IP if asked; each tagged with the project,
    the participant and the deployment, and recorded in the deployment's state folder the moment
    it exists. Running it again reuses what exists. Credentials come from boto3's usual chain
    (AWS_PROFILE, environment, instance role); AWS_ENDPOINT_URL points it at another endpoint.
    `flctl deploy destroy INVENTORY` removes exactly what was recorded.
    """)

    def check(self, host: HostSpec) -> None:
        super().check(host)
        if host.block_as(AwsMachine).key_name is not None and host.key_file is None:
            raise ValueError("[key_file] aws.key_name needs key_file: the private key of that key pair")

    def location(self, host: HostSpec) -> str:
        return host.block_as(AwsMachine).region

    def resources(self, host: HostSpec, name: str, allowed: str) -> tuple[Resource, ...]:
        machine = host.block_as(AwsMachine)
        vpc = machine.vpc or ("the subnet's VPC" if machine.subnet else "the default VPC")
        res = [Resource("security_group", name, f"security group in {vpc}: inbound only {allowed}")]
        if machine.key_name is None:
            res.append(Resource("key_pair", name, "key pair from a new ed25519 key (its private half stays here)"))
        disk = f", {machine.disk_gb} GB root volume" if machine.disk_gb else ""
        res.append(Resource("instance", name, f"{machine.instance_type} instance of {machine.image} in "
                            f"{machine.region}{disk}, IMDSv2 only, key pair "
                            f"{machine.key_name or name}"))
        if machine.elastic_ip:
            res.append(Resource("address", name, "Elastic IP associated with the instance"))
        return tuple(res)

    def machines(self, state: DeploymentState, progress: CloudProgress | None) -> MachineProvider:
        from flctl.cloud.aws_machines import AwsMachines

        return AwsMachines(state, progress)
