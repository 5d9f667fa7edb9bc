"""`flctl deploy aws` and `flctl deploy destroy` against moto's EC2 in server mode on 127.0.0.1.

The machines exist only in moto, so one real sshd on 127.0.0.1 stands in for all of them: the
inventory's `ssh_config` sends every address there (as a bastion or a port forward would), and
that sshd accepts exactly the keys flctl generated for the machines. The whole cycle runs through
the CLI: create, roll out, run hello-numpy, deploy again (nothing new), destroy, destroy again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.federation import Federation, make_federation
from tests.moto_server import MotoServer
from tests.sshd import SshHost, free_port, make_key
from tests.test_deploy_ssh import HOST_PYTHON, JOBS, flctl, processes_under

REGION = "eu-west-1"
OPERATOR = "203.0.113.7/32"
SITES_NET = "198.51.100.0/24"


@dataclass
class Cloud:
    root: Path
    fed: Federation
    moto: MotoServer
    sshd: SshHost
    inventory: Path
    state: Path
    env: dict[str, str]
    ec2: Any

    def deploy(self, *args: str | Path, timeout: float = 400) -> Any:
        return flctl("deploy", *args, env=self.env, timeout=timeout)

    def live(self, deployment: str) -> dict[str, list[str]]:
        """Every EC2 resource still alive that carries this deployment's tag, by kind."""
        tag = [{"Name": "tag:flctl:deployment", "Values": [deployment]}]
        instances = [i["InstanceId"] for r in self.ec2.describe_instances(Filters=tag)["Reservations"]
                     for i in r["Instances"] if i["State"]["Name"] != "terminated"]
        return {"instances": instances,
                "security_groups": [g["GroupId"] for g in self.ec2.describe_security_groups(Filters=tag)
                                    ["SecurityGroups"]],
                "key_pairs": [k["KeyName"] for k in self.ec2.describe_key_pairs(Filters=tag)["KeyPairs"]],
                "addresses": [a["AllocationId"] for a in self.ec2.describe_addresses(Filters=tag)["Addresses"]],
                "volumes": [v["VolumeId"] for v in self.ec2.describe_volumes(Filters=tag)["Volumes"]
                            if v["State"] != "deleted"]}

    def deployment(self) -> str:
        return str(json.loads((self.state / "state.json").read_text())["deployment"])


def cloud_inventory(fed: Federation, root: Path, image: str, venvs: Path, extra: str = "") -> str:
    hosts = []
    for name in ["localhost", *fed.sites]:
        server = name == "localhost"
        hosts.append(
            f"  - participant: {name}\n    provider: aws\n    user: root\n    python: {HOST_PYTHON}\n"
            f"    install_dir: {root / 'machines' / name}\n    venv_root: {venvs}\n    min_free_mb: 50\n"
            f"    aws:\n      region: {REGION}\n      image: {image}\n      instance_type: t3.small\n"
            f"      ssh_cidrs: [{OPERATOR}]\n      tags: {{team: fl-platform}}\n"
            + (f"      federation_cidrs: [{SITES_NET}]\n      elastic_ip: true\n" if server else ""))
    return (f"api_version: 1\nkits: {fed.prod}\nadmin_kit: {fed.admin}\nssh_config: ssh_config\n"
            f"deployment: state\nhealth_timeout_s: 60\n{extra}hosts:\n" + "".join(hosts))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, host_venvs: Path) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("aws")
    fed = make_federation(root, sites=2)
    moto = MotoServer(root / "moto.log")
    sshd: SshHost | None = None
    try:
        ec2: Any = moto.client()
        image = ec2.describe_images()["Images"][0]["ImageId"]
        state = root / "state"
        keys = [state / "keys" / f"{name}.pub" for name in ["localhost", *fed.sites]]
        sshd = SshHost(root / "sshd", free_port(), make_key(_mkdir(root / "sshd") / "host_key")).start(keys)
        (root / "ssh_config").write_text(f"Host *\n  HostName 127.0.0.1\n  Port {sshd.port}\n")
        inventory = root / "cloud.yml"
        inventory.write_text(cloud_inventory(fed, root, image, host_venvs))
        env = {**moto.env(), "FLCTL_WHEEL_CACHE": str(wheel_cache)}
        yield Cloud(root, fed, moto, sshd, inventory, state, env, ec2)
    finally:
        for pid in processes_under(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if sshd is not None:
            sshd.stop()
        moto.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_dry_run_prints_every_resource_and_calls_no_api(cloud: Cloud) -> None:
    """--dry-run lists each machine's resources and inbound rules without a single EC2 call."""
    # Prepare: an endpoint nothing listens on, so any API call would fail
    env = {**cloud.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    # Execute
    out = flctl("deploy", "aws", cloud.inventory, "--dry-run", "--json", env=env)
    # Assert
    assert out.returncode == 0, out.stderr
    plans = {p["participant"]: p for p in json.loads(out.stdout)}
    assert [r["kind"] for r in plans["localhost"]["resources"]] == ["security_group", "key_pair", "instance",
                                                                     "address"]
    assert [r["kind"] for r in plans["site-1"]["resources"]] == ["security_group", "key_pair", "instance"]
    assert plans["localhost"]["inbound"] == [{"port": 22, "cidr": OPERATOR, "purpose": "ssh"},
                                             {"port": cloud.fed.port, "cidr": SITES_NET, "purpose": "federation"}]
    assert plans["site-1"]["inbound"] == [{"port": 22, "cidr": OPERATOR, "purpose": "ssh"}]
    assert not (cloud.state / "state.json").exists()


def test_deploy_creates_least_privilege_machines_and_the_federation_runs_on_them(cloud: Cloud) -> None:
    """Three instances come up with tagged, recorded resources and exact rules; the kits run hello-numpy."""
    # Execute
    out = cloud.deploy("aws", cloud.inventory, "--parallel", "3", "--json")
    # Assert: the rollout
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert [(m["participant"], m["status"]) for m in result["machines"]] == [
        ("localhost", "ready"), ("site-1", "ready"), ("site-2", "ready")]
    assert [(r["participant"], r["status"]) for r in result["rollout"]] == [
        ("localhost", "deployed"), ("site-1", "deployed"), ("site-2", "deployed")]
    # Assert: what EC2 holds, rule by rule
    deployment = cloud.deployment()
    live = cloud.live(deployment)
    assert (len(live["instances"]), len(live["security_groups"]), len(live["key_pairs"]),
            len(live["addresses"])) == (3, 3, 3, 1)
    groups = {_tag(g, "flctl:participant"): g for g in cloud.ec2.describe_security_groups(
        GroupIds=live["security_groups"])["SecurityGroups"]}
    assert _rules(groups["localhost"]) == {("tcp", 22, OPERATOR), ("tcp", cloud.fed.port, SITES_NET)}
    assert _rules(groups["site-1"]) == {("tcp", 22, OPERATOR)}
    assert _rules(groups["site-2"]) == {("tcp", 22, OPERATOR)}
    instances = [i for r in cloud.ec2.describe_instances(InstanceIds=live["instances"])["Reservations"]
                 for i in r["Instances"]]
    for instance in instances:
        name = _tag(instance, "flctl:participant")
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["KeyName"] == f"flctl-fedtest-{name}-{deployment}"
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [groups[name]["GroupId"]]
        assert {_tag(instance, "team"), _tag(instance, "flctl:project")} == {"fl-platform", "fedtest"}
    # Assert: the private keys never left; EC2 got the public halves
    for pair in cloud.ec2.describe_key_pairs(KeyNames=live["key_pairs"], IncludePublicKey=True)["KeyPairs"]:
        name = _tag(pair, "flctl:participant")
        assert pair["PublicKey"].split()[:2] == (cloud.state / "keys" / f"{name}.pub").read_text().split()[:2]
        assert (cloud.state / "keys" / name).stat().st_mode & 0o777 == 0o600
    # Assert: the federation works
    job = flctl("job", "submit", JOBS / "hello-numpy", "--watch", "--json", "--kit", cloud.fed.admin_kit,
                timeout=120)
    assert job.returncode == 0, job.stdout + job.stderr
    assert json.loads(job.stdout)["status"] == "FINISHED"


def test_second_deploy_creates_nothing_and_closes_a_port_opened_by_hand(cloud: Cloud) -> None:
    """Deploying again reuses every recorded resource, changes no host, and revokes a rule nobody planned."""
    # Prepare: somebody opens SSH to the world on a site's group
    deployment = cloud.deployment()
    before = cloud.live(deployment)
    group = next(g for g in cloud.ec2.describe_security_groups(GroupIds=before["security_groups"])["SecurityGroups"]
                 if _tag(g, "flctl:participant") == "site-1")
    cloud.ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    # Execute
    out = cloud.deploy("aws", cloud.inventory, "--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    assert {r["status"] for r in json.loads(out.stdout)["rollout"]} == {"unchanged"}, out.stdout
    assert cloud.live(deployment) == before
    fixed = cloud.ec2.describe_security_groups(GroupIds=[group["GroupId"]])["SecurityGroups"][0]
    assert _rules(fixed) == {("tcp", 22, OPERATOR)}


def test_status_and_stop_reach_the_cloud_machines_by_their_recorded_addresses(cloud: Cloud) -> None:
    """`deploy status` and `deploy stop` work on a cloud inventory like on an SSH one."""
    # Execute
    status = cloud.deploy("status", cloud.inventory, "--json")
    stop = cloud.deploy("stop", cloud.inventory, "--json")
    # Assert
    assert status.returncode == 0, status.stdout + status.stderr
    assert {r["status"] for r in json.loads(status.stdout)} == {"running"}
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert {r["status"] for r in json.loads(stop.stdout)} == {"stopped"}


def test_destroy_removes_exactly_what_was_recorded_and_a_second_destroy_does_nothing(cloud: Cloud) -> None:
    """Instances, groups, key pairs and the address go; an unrelated tagged group stays; destroy twice is fine."""
    # Prepare: a group flctl did not create, with the same project tag
    deployment = cloud.deployment()
    vpc = cloud.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    other = cloud.ec2.create_security_group(GroupName="someone-elses", Description="not flctl's", VpcId=vpc,
                                            TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                                                {"Key": "flctl:project", "Value": "fedtest"}]}])["GroupId"]
    planned = cloud.deploy("destroy", cloud.inventory, "--dry-run", "--json")
    # Execute
    first = cloud.deploy("destroy", cloud.inventory, "--yes", "--json")
    second = cloud.deploy("destroy", cloud.inventory, "--yes")
    # Assert
    assert planned.returncode == 0, planned.stderr
    assert len(json.loads(planned.stdout)) == 10  # 3 groups, 3 key pairs, 3 instances, 1 address
    assert first.returncode == 0, first.stdout + first.stderr
    kinds = [r["kind"] for r in json.loads(first.stdout)]
    assert kinds == ["address"] + ["instance"] * 3 + ["security_group"] * 3 + ["key_pair"] * 3
    assert cloud.live(deployment) == {"instances": [], "security_groups": [], "key_pairs": [], "addresses": [],
                                      "volumes": []}
    assert cloud.ec2.describe_security_groups(GroupIds=[other])["SecurityGroups"]
    assert second.returncode == 0, second.stderr
    assert "nothing to destroy" in second.stderr
    assert not list((cloud.state / "keys").glob("*"))


def test_missing_credentials_and_unknown_participants_are_one_sentence_each(cloud: Cloud) -> None:
    """No credentials exits 3 naming what to set; a participant not in the inventory exits 2."""
    # Prepare
    env = {k: v for k, v in cloud.env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    env.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true"})
    # Execute
    creds = flctl("deploy", "aws", cloud.inventory, "site-1", "--machines-only", env=env)
    unknown = cloud.deploy("aws", cloud.inventory, "site-9")
    # Assert
    assert creds.returncode == 3, creds.stdout + creds.stderr
    assert "no AWS credentials found" in creds.stderr and "Traceback" not in creds.stderr
    assert unknown.returncode == 2, unknown.stderr
    assert "no participant 'site-9'" in unknown.stderr


def _tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def _rules(group: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {(p["IpProtocol"], p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p["IpRanges"]}
