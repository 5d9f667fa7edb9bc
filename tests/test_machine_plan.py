"""Cloud machine plans (pure) and the inventory's `aws:` / `azure:` blocks: exact rules, names and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.deploy_state import DeploymentState, Machine, Record
from flctl.cloud.host_access import resolve
from flctl.cloud.inventory import HostSpec, load_inventory
from flctl.cloud.machine_plan import Rule, plan_machine, resource_name
from flctl.provisioner.errors import InputError

AWS = {"region": "eu-west-1", "image": "ami-0123456789abcdef0", "ssh_cidrs": ["203.0.113.7/32"]}


def host(**aws: object) -> HostSpec:
    return HostSpec.model_validate({"participant": "site-1", "provider": "aws", "user": "ubuntu",
                                    "install_dir": "/opt/flctl", "aws": {**AWS, **aws}})


def test_a_site_gets_ssh_from_the_operator_only() -> None:
    """A site's machine opens SSH to the operator's CIDRs and nothing else: sites only dial out."""
    # Execute
    plan = plan_machine(host(ssh_cidrs=["203.0.113.7/32", "198.51.100.0/28"]), "proj", "a1b2c3", False, 8002)
    # Assert
    assert plan.rules == (Rule(22, "203.0.113.7/32", "ssh"), Rule(22, "198.51.100.0/28", "ssh"))
    assert [r.kind for r in plan.resources] == ["security_group", "key_pair", "instance"]


def test_the_server_also_gets_the_federation_port_from_federation_cidrs() -> None:
    """The server's machine adds the kit's federation port from federation_cidrs (default: anywhere, mTLS)."""
    # Execute
    default = plan_machine(host(), "proj", "a1b2c3", True, 8002)
    narrowed = plan_machine(host(federation_cidrs=["10.0.0.0/8"], elastic_ip=True), "proj", "a1b2c3", True, 8443)
    # Assert
    assert default.rules[1:] == (Rule(8002, "0.0.0.0/0", "federation"),)
    assert narrowed.rules[1:] == (Rule(8443, "10.0.0.0/8", "federation"),)
    assert [r.kind for r in narrowed.resources][-1] == "address"


def test_an_existing_key_pair_is_used_instead_of_a_new_one() -> None:
    """With aws.key_name no key pair is planned, and key_file is required."""
    # Execute
    spec = HostSpec.model_validate({"participant": "s", "provider": "aws", "user": "u", "install_dir": "/x",
                                    "key_file": "id", "aws": {**AWS, "key_name": "ops"}})
    # Assert
    assert "key_pair" not in [r.kind for r in plan_machine(spec, "p", "d", False, 1).resources]
    with pytest.raises(ValueError, match="key_name needs key_file"):
        HostSpec.model_validate({"participant": "s", "provider": "aws", "user": "u", "install_dir": "/x",
                                 "aws": {**AWS, "key_name": "ops"}})


def test_tags_carry_project_participant_and_deployment_over_the_users() -> None:
    """flctl's own tags cannot be overridden, and user tags may not use the flctl: or aws: prefixes."""
    # Execute
    plan = plan_machine(host(tags={"team": "fl"}), "proj", "a1b2c3", False, 8002)
    # Assert
    assert plan.tags == {"team": "fl", "Name": "flctl-proj-site-1-a1b2c3", "flctl:project": "proj",
                         "flctl:participant": "site-1", "flctl:deployment": "a1b2c3"}
    with pytest.raises(ValueError, match="not starting with aws: or flctl:"):
        host(tags={"flctl:deployment": "x"})


def test_resource_names_are_cleaned_and_bounded() -> None:
    """Dots, @ and capitals become dashes and lower case; long names are cut, keeping the deployment id."""
    # Execute
    name = resource_name("My Project", "server1.example.com", "a1b2c3")
    long = resource_name("p" * 80, "site", "a1b2c3")
    # Assert
    assert name == "flctl-my-project-server1-example-com-a1b2c3"
    assert len(long) <= 60 and long.endswith("-a1b2c3")


@pytest.fixture
def kits(tmp_path: Path) -> Path:
    prod = tmp_path / "ws" / "proj" / "prod_00"
    for name in ("server1", "site-1"):
        (prod / name / "startup").mkdir(parents=True)
    return prod


def test_cloud_host_mistakes_are_reported_with_lines(tmp_path: Path, kits: Path) -> None:
    """An address on a cloud host, a missing block, a bad region and an open-host CIDR each name their line."""
    # Prepare
    path = tmp_path / "inv.yml"
    path.write_text("""api_version: 1
kits: ws/proj/prod_00
hosts:
  - participant: server1
    provider: aws
    address: 10.0.0.1
    user: ubuntu
    install_dir: /opt/flctl
    aws: {region: eu-west-1, image: ami-0123456789abcdef0, ssh_cidrs: [203.0.113.7/32]}
  - participant: site-1
    provider: azure
    user: flctl
    install_dir: /opt/flctl
  - participant: site-1
    provider: aws
    user: ubuntu
    install_dir: /srv/flctl
    aws: {region: Europe, image: ubuntu, ssh_cidrs: [203.0.113.7/24]}
""")
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    # Assert
    got = {(p.line, p.field): p.message for p in caught.value.problems}
    assert "'address' is not allowed with provider: aws" in got[(6, "hosts[0].address")]
    assert "needs an 'azure:' block" in got[(11, "hosts[1].provider")]
    assert "AWS region" in got[(18, "hosts[2].aws.region")]
    assert "AMI id" in got[(18, "hosts[2].aws.image")]
    assert "host bits must be zero" in got[(18, "hosts[2].aws.ssh_cidrs")]


def test_cloud_hosts_resolve_to_the_addresses_their_deployment_recorded(tmp_path: Path, kits: Path) -> None:
    """A created machine is reached at its recorded address with its generated key; others are listed absent."""
    # Prepare
    path = tmp_path / "inv.yml"
    aws = "{region: eu-west-1, image: ami-0123456789abcdef0, ssh_cidrs: [203.0.113.7/32]}"
    path.write_text(f"api_version: 1\nkits: ws/proj/prod_00\nhosts:\n"
                    f"  - {{participant: server1, provider: aws, user: u, install_dir: /a, aws: {aws}}}\n"
                    f"  - {{participant: site-1, provider: aws, user: u, install_dir: /b, aws: {aws}}}\n")
    state = DeploymentState(tmp_path / "inv.deploy", "d1", "proj")
    state.add(Record("aws", "instance", "i-1", "n", "server1", "eu-west-1"))
    state.set_machine(Machine("server1", "aws", "198.51.100.4", "u", str(state.keys / "server1"), "i-1"))
    # Execute
    resolved = resolve(load_inventory(path))
    # Assert
    (server,) = resolved.inventory.hosts
    assert (server.participant, server.address, server.key_file) == ("server1", "198.51.100.4",
                                                                      str(state.keys / "server1"))
    assert [h.participant for h in resolved.absent] == ["site-1"]
