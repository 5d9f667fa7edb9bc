"""EC2 machines through boto3: a security group with only the planned inbound rules, an imported key pair,
the instance (IMDSv2 only), an optional Elastic IP; and their deletion.

Credentials and endpoint come from boto3's usual chain (profiles, environment, AWS_ENDPOINT_URL); flctl
never reads or stores a secret. Every call's failure becomes one DeployError sentence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flctl.cloud.deploy_errors import CloudCredentialsMissing, CloudError, CloudUnreachable, DeployError
from flctl.cloud.deploy_state import DeploymentState, Machine, Record
from flctl.cloud.machine_plan import MachinePlan, Rule
from flctl.cloud.machine_provider import CloudProgress, MachineProvider
from flctl.cloud.ssh_keys import ensure_key
from flctl.cloud.targets.aws import AwsMachine

T = TypeVar("T")
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
GONE_CODES = {"InvalidGroup.NotFound", "InvalidInstanceID.NotFound", "InvalidKeyPair.NotFound",
              "InvalidAllocationID.NotFound", "InvalidAssociationID.NotFound"}
ORDER = {"address": 0, "instance": 1, "security_group": 2, "key_pair": 3}


def aws_call(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`; a botocore failure becomes one sentence naming `what`."""
    from botocore import exceptions as bx

    try:
        return call(*args, **kwargs)
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise CloudCredentialsMissing(f"{what}: no AWS credentials found; set a profile (AWS_PROFILE) or "
                                      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError) as exc:
        raise CloudUnreachable(f"{what}: cannot reach the EC2 API ({exc}); check the network and the region") \
            from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
        if code in ("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch"):
            raise CloudCredentialsMissing(f"{what}: AWS refused the credentials ({code}: {message})") from None
        raise CloudError(f"{what}: AWS said {code}: {message}", ) from exc
    except bx.BotoCoreError as exc:
        raise CloudError(f"{what}: {exc}") from None


def _code(exc: BaseException) -> str:
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _tag_specs(kind: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}]


def _permissions(rules: tuple[Rule, ...] | list[Rule]) -> list[dict[str, Any]]:
    """EC2 IpPermissions for `rules`, one per port."""
    ports: dict[int, list[Rule]] = {}
    for rule in rules:
        ports.setdefault(rule.port, []).append(rule)
    return [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
             "IpRanges": [{"CidrIp": r.cidr, "Description": r.description} for r in group]}
            for port, group in sorted(ports.items())]


def _current_rules(group: dict[str, Any]) -> set[tuple[str, int, int, str]]:
    out = set()
    for perm in group.get("IpPermissions", []):
        for rng in perm.get("IpRanges", []):
            out.add((perm.get("IpProtocol", ""), perm.get("FromPort", -1), perm.get("ToPort", -1), rng["CidrIp"]))
        for rng in perm.get("Ipv6Ranges", []):
            out.add((perm.get("IpProtocol", ""), perm.get("FromPort", -1), perm.get("ToPort", -1), rng["CidrIpv6"]))
    return out


class AwsMachines(MachineProvider):
    """EC2, one client per region."""

    name = "aws"

    def __init__(self, state: DeploymentState, progress: CloudProgress | None = None,
                 wait_timeout_s: float = 600.0, client_factory: Callable[[str], Any] | None = None) -> None:
        super().__init__(state, progress)
        self.wait_timeout_s = wait_timeout_s
        self._factory = client_factory or _default_client
        self._clients: dict[str, Any] = {}

    def ec2(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._factory(region)
        return self._clients[region]

    # ---- ensure ---------------------------------------------------------------------------------------------
    def ensure(self, plan: MachinePlan) -> Machine:
        spec = plan.host.block_as(AwsMachine)
        ec2 = self.ec2(spec.region)
        vpc = self._vpc(ec2, spec)
        group = self._security_group(ec2, plan, spec, vpc)
        key_name = spec.key_name or self._key_pair(ec2, plan, spec)
        instance = self._instance(ec2, plan, spec, group, key_name)
        if spec.elastic_ip:
            self._elastic_ip(ec2, plan, spec, instance)
        address = self._address(ec2, plan, spec, instance)
        key_file = str(self.state.keys / plan.participant) if spec.key_name is None else ""
        return Machine(plan.participant, "aws", address, plan.host.user, key_file, instance)

    def _vpc(self, ec2: Any, spec: AwsMachine) -> str:
        if spec.subnet is not None:
            found = aws_call(f"finding subnet {spec.subnet}", ec2.describe_subnets, SubnetIds=[spec.subnet])
            vpc = str(found["Subnets"][0]["VpcId"])
            if spec.vpc is not None and spec.vpc != vpc:
                raise DeployError(f"subnet {spec.subnet} is in {vpc}, not in {spec.vpc}; fix aws.vpc or aws.subnet")
            return vpc
        if spec.vpc is not None:
            aws_call(f"finding VPC {spec.vpc}", ec2.describe_vpcs, VpcIds=[spec.vpc])
            return spec.vpc
        found = aws_call("finding the default VPC", ec2.describe_vpcs,
                         Filters=[{"Name": "isDefault", "Values": ["true"]}])
        if not found["Vpcs"]:
            raise DeployError(f"{spec.region} has no default VPC; set aws.vpc and aws.subnet in the inventory")
        return str(found["Vpcs"][0]["VpcId"])

    def _security_group(self, ec2: Any, plan: MachinePlan, spec: AwsMachine, vpc: str) -> str:
        name = plan.base_name
        record = self.state.find(plan.participant, "security_group")
        filters = [{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [name]}]
        found = aws_call("looking for the security group", ec2.describe_security_groups, Filters=filters)
        groups = found["SecurityGroups"]
        if groups:
            group = groups[0]
            gid = str(group["GroupId"])
            how = "reused" if record is not None and record.id == gid else "adopted"
            if how == "adopted" and group_tag(group, "flctl:deployment") != plan.deployment:
                raise DeployError(f"a security group named {name} exists in {vpc} but was not made by this "
                                  "deployment; delete or rename it")
        else:
            made = aws_call("creating the security group", ec2.create_security_group, GroupName=name, VpcId=vpc,
                            Description=f"flctl {plan.project} {plan.participant}: SSH from the operator"
                            + (", the federation port" if plan.server else ""),
                            TagSpecifications=_tag_specs("security-group", plan.tags))
            gid, group, how = str(made["GroupId"]), {}, "created"
        self._record(plan, "security_group", gid, name, spec.region, how, vpc=vpc)
        self._reconcile_rules(ec2, gid, group, plan)
        return gid

    def _reconcile_rules(self, ec2: Any, gid: str, group: dict[str, Any], plan: MachinePlan) -> None:
        """Make the group's inbound rules exactly the planned ones: add what is missing, revoke what is extra."""
        want = {("tcp", r.port, r.port, r.cidr): r for r in plan.rules}
        have = _current_rules(group)
        missing = [rule for key, rule in want.items() if key not in have]
        extra = [key for key in have if key not in want]
        if missing:
            aws_call("opening the planned ports", ec2.authorize_security_group_ingress, GroupId=gid,
                     IpPermissions=_permissions(missing))
        if extra:
            revoke = [{"IpProtocol": p, "FromPort": f, "ToPort": t,
                       **({"Ipv6Ranges": [{"CidrIpv6": c}]} if ":" in c else {"IpRanges": [{"CidrIp": c}]})}
                      for p, f, t, c in extra]
            aws_call("closing ports nobody planned", ec2.revoke_security_group_ingress, GroupId=gid,
                     IpPermissions=revoke)

    def _key_pair(self, ec2: Any, plan: MachinePlan, spec: AwsMachine) -> str:
        name = plan.base_name
        public = ensure_key(self.state.keys / plan.participant, f"flctl-{plan.participant}")
        record = self.state.find(plan.participant, "key_pair")
        found = aws_call("looking for the key pair", ec2.describe_key_pairs,
                         Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
        if found:
            pair = found[0]
            if group_tag(pair, "flctl:deployment") != plan.deployment:
                raise DeployError(f"a key pair named {name} exists in {spec.region} but was not made by this "
                                  "deployment; delete it")
            how = "reused" if record is not None else "adopted"
            self._record(plan, "key_pair", str(pair.get("KeyPairId", name)), name, spec.region, how)
            return name
        made = aws_call("importing the key pair", ec2.import_key_pair, KeyName=name,
                        PublicKeyMaterial=public.encode(), TagSpecifications=_tag_specs("key-pair", plan.tags))
        self._record(plan, "key_pair", str(made.get("KeyPairId", name)), name, spec.region, "created")
        return name

    def _instance(self, ec2: Any, plan: MachinePlan, spec: AwsMachine, group: str, key_name: str) -> str:
        filters = [{"Name": "tag:flctl:deployment", "Values": [plan.deployment]},
                   {"Name": "tag:flctl:participant", "Values": [plan.participant]},
                   {"Name": "instance-state-name", "Values": LIVE_STATES}]
        found = [i for r in aws_call("looking for the instance", ec2.describe_instances, Filters=filters)
                 ["Reservations"] for i in r["Instances"]]
        record = self.state.find(plan.participant, "instance")
        if found:
            instance = found[0]
            iid = str(instance["InstanceId"])
            how = "reused" if record is not None and record.id == iid else "adopted"
            if instance["State"]["Name"] in ("stopping", "stopped"):
                self._wait(ec2, iid, {"stopped"}, "to stop before it starts again")
                aws_call("starting the stopped instance", ec2.start_instances, InstanceIds=[iid])
        else:
            args: dict[str, Any] = {
                "ImageId": spec.image, "InstanceType": spec.instance_type, "MinCount": 1, "MaxCount": 1,
                "KeyName": key_name, "SecurityGroupIds": [group], "UserData": spec.user_data,
                "ClientToken": f"flctl-{plan.deployment}-{plan.participant}"[:64],
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
                "TagSpecifications": _tag_specs("instance", plan.tags) + _tag_specs("volume", plan.tags)}
            if spec.subnet is not None:
                args["SubnetId"] = spec.subnet
            if spec.disk_gb is not None:
                args["BlockDeviceMappings"] = [{"DeviceName": self._root_device(ec2, spec),
                                                "Ebs": {"VolumeSize": spec.disk_gb, "DeleteOnTermination": True,
                                                        "Encrypted": True}}]
            made = aws_call("launching the instance", ec2.run_instances, **args)
            iid, how = str(made["Instances"][0]["InstanceId"]), "created"
        self._record(plan, "instance", iid, plan.base_name, spec.region, how)
        self._wait(ec2, iid, {"running"}, "to run")
        return iid

    def _root_device(self, ec2: Any, spec: AwsMachine) -> str:
        images = aws_call(f"describing image {spec.image}", ec2.describe_images, ImageIds=[spec.image])["Images"]
        if not images:
            raise DeployError(f"image {spec.image} does not exist in {spec.region}; fix aws.image")
        return str(images[0].get("RootDeviceName", "/dev/sda1"))

    def _elastic_ip(self, ec2: Any, plan: MachinePlan, spec: AwsMachine, instance: str) -> None:
        record = self.state.find(plan.participant, "address")
        filters = [{"Name": "tag:flctl:deployment", "Values": [plan.deployment]},
                   {"Name": "tag:flctl:participant", "Values": [plan.participant]}]
        found = aws_call("looking for the Elastic IP", ec2.describe_addresses, Filters=filters)["Addresses"]
        if found:
            address = found[0]
            allocation = str(address["AllocationId"])
            how = "reused" if record is not None and record.id == allocation else "adopted"
        else:
            made = aws_call("allocating an Elastic IP", ec2.allocate_address, Domain="vpc",
                            TagSpecifications=_tag_specs("elastic-ip", plan.tags))
            allocation, address, how = str(made["AllocationId"]), {}, "created"
        self._record(plan, "address", allocation, plan.base_name, spec.region, how)
        if address.get("InstanceId") != instance:
            aws_call("associating the Elastic IP", ec2.associate_address, AllocationId=allocation,
                     InstanceId=instance, AllowReassociation=True)

    def _address(self, ec2: Any, plan: MachinePlan, spec: AwsMachine, instance: str) -> str:
        found = aws_call("describing the instance", ec2.describe_instances, InstanceIds=[instance])
        info = found["Reservations"][0]["Instances"][0]
        address = info.get("PublicIpAddress") if spec.connect == "public" else info.get("PrivateIpAddress")
        if not address:
            raise DeployError(f"{plan.participant}: instance {instance} has no {spec.connect} address; give it one "
                              "with aws.elastic_ip: true, a subnet that assigns public addresses, or connect: "
                              "private from inside the VPC")
        return str(address)

    def _wait(self, ec2: Any, instance: str, states: set[str], what: str) -> None:
        deadline = time.monotonic() + self.wait_timeout_s
        delay = 0.2
        while True:
            found = aws_call("describing the instance", ec2.describe_instances, InstanceIds=[instance])
            state = found["Reservations"][0]["Instances"][0]["State"]["Name"]
            if state in states:
                return
            if state == "terminated" and "terminated" not in states:
                raise DeployError(f"instance {instance} terminated while waiting for it {what}; see its console "
                                  "output in the EC2 console")
            if time.monotonic() > deadline:
                raise DeployError(f"instance {instance} did not finish waiting {what} within "
                                  f"{self.wait_timeout_s:.0f} s (it is {state})")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    # ---- delete ---------------------------------------------------------------------------------------------
    def destroy_order(self, records: list[Record]) -> list[Record]:
        return sorted(records, key=lambda r: ORDER.get(r.kind, 9))

    def delete(self, record: Record) -> bool:
        ec2 = self.ec2(record.location)
        try:
            if record.kind == "address":
                found = aws_call("looking for the Elastic IP", ec2.describe_addresses,
                                 AllocationIds=[record.id])["Addresses"]
                if found and found[0].get("AssociationId"):
                    aws_call("detaching the Elastic IP", ec2.disassociate_address,
                             AssociationId=found[0]["AssociationId"])
                aws_call("releasing the Elastic IP", ec2.release_address, AllocationId=record.id)
            elif record.kind == "instance":
                found = aws_call("describing the instance", ec2.describe_instances, InstanceIds=[record.id])
                if found["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated":
                    return False
                aws_call("terminating the instance", ec2.terminate_instances, InstanceIds=[record.id])
                self._wait(ec2, record.id, {"terminated"}, "to terminate")
            elif record.kind == "security_group":
                self._delete_group(ec2, record.id)
            elif record.kind == "key_pair":
                found = aws_call("looking for the key pair", ec2.describe_key_pairs,
                                 Filters=[{"Name": "key-name", "Values": [record.name]}])["KeyPairs"]
                if not found:
                    return False
                aws_call("deleting the key pair", ec2.delete_key_pair, KeyName=record.name)
            else:
                raise DeployError(f"the state records an AWS {record.kind}, which this flctl cannot delete")
        except CloudError as exc:
            if _code(exc) in GONE_CODES:
                return False
            raise
        return True

    def _delete_group(self, ec2: Any, group: str) -> None:
        """Delete a security group; an instance just terminated may hold it for a few seconds more."""
        deadline = time.monotonic() + self.wait_timeout_s
        while True:
            try:
                aws_call("deleting the security group", ec2.delete_security_group, GroupId=group)
                return
            except CloudError as exc:
                if _code(exc) != "DependencyViolation" or time.monotonic() > deadline:
                    raise
                time.sleep(2)


def group_tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def _default_client(region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("ec2", region_name=region, config=config)
