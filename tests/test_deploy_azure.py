"""`flctl deploy azure` against a local HTTPS stand-in for Azure Resource Manager (tests/azure_arm.py).

The stand-in answers like ARM, long-running operations included, and records every request, so
these tests check the exact sequence of calls and their bodies: the security rules, SSH-key-only
login, the tags. `DefaultAzureCredential` gets its token from the stand-in's managed-identity
endpoint, and the SDK trusts the stand-in's test CA through `connection_verify`/REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential

from flctl.cloud.azure_machines import AzureMachines
from flctl.cloud.cloud_rollout import CloudRollout
from flctl.cloud.deploy_errors import DeployError
from flctl.cloud.deploy_state import DeploymentState
from flctl.cloud.inventory import load_inventory
from flctl.cloud.machine_provider import CloudProgress
from tests.azure_arm import ArmServer
from tests.test_deploy_ssh import flctl

SUB = "00000000-0000-0000-0000-0000000000aa"
OPERATOR = "203.0.113.7/32"
RG = "fl-demo"


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmServer]:
    server = ArmServer(tmp_path)
    for key, value in server.identity_env().items():
        monkeypatch.setenv(key, value)
    for key in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    try:
        yield server
    finally:
        server.stop()


def write_inventory(root: Path, arm: ArmServer, kits: Path, names: list[str]) -> Path:
    hosts = "".join(
        f"  - participant: {name}\n    provider: azure\n    user: flctl\n    install_dir: /opt/flctl\n"
        f"    azure:\n      subscription: {SUB}\n      location: westeurope\n      resource_group: {RG}\n"
        f"      ssh_cidrs: [{OPERATOR}]\n      arm_endpoint: {arm.url}\n      tags: {{cost-centre: research}}\n"
        for name in names)
    path = root / "azure.yml"
    path.write_text(f"api_version: 1\nkits: {kits}\nhosts:\n{hosts}")
    return path


@pytest.fixture
def kits(local_kits: Any) -> Path:
    return Path(local_kits.prod_dir)


def rollout(inventory: Path, arm: ArmServer) -> CloudRollout:
    """A rollout whose Azure clients poll fast (the stand-in asks for no wait) and trust its CA."""
    def provider(name: str, state: DeploymentState, progress: CloudProgress) -> AzureMachines:
        return AzureMachines(state, progress, credential=DefaultAzureCredential(), connection_verify=str(arm.ca),
                             polling_interval=0.01)

    return CloudRollout(load_inventory(inventory), provider)


def server_and_site(kits: Path) -> tuple[str, str]:
    from flctl.provisioner.kit_info import read_kit

    names = [p.name for p in sorted(kits.iterdir()) if (p / "startup").is_dir()]
    server = next(n for n in names if read_kit(kits / n).kind == "server")
    site = next(n for n in names if read_kit(kits / n).kind == "site")
    return server, site


def test_create_sends_the_exact_arm_calls_with_least_privilege_bodies(tmp_path: Path, arm: ArmServer,
                                                                      kits: Path) -> None:
    """Resource group, NSG, VNet, public IP, NIC, VM: in that order, polled to the end, tagged, keys only."""
    # Prepare
    server, _ = server_and_site(kits)
    cloud = rollout(write_inventory(tmp_path, arm, kits, [server]), arm)
    # Execute
    results = cloud.create("azure", [])
    # Assert
    assert [(r.participant, r.status) for r in results] == [(server, "ready")], results[0].message
    deployment = json.loads((tmp_path / "azure.deploy" / "state.json").read_text())["deployment"]
    base = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
    name = f"flctl-{kits.parent.name.lower()}-{server.replace('.', '-').lower()}-{deployment}"
    puts = [c.path for c in arm.calls("PUT")]
    assert puts == [f"/subscriptions/{SUB}/resourcegroups/{RG}",
                    f"{base}/Microsoft.Network/networkSecurityGroups/{name}-nsg",
                    f"{base}/Microsoft.Network/virtualNetworks/{name}-vnet",
                    f"{base}/Microsoft.Network/publicIPAddresses/{name}-ip",
                    f"{base}/Microsoft.Network/networkInterfaces/{name}-nic",
                    f"{base}/Microsoft.Compute/virtualMachines/{name}-vm"]
    polls = [c for c in arm.calls("GET") if c.path.startswith("/operations/")]
    assert len(polls) == 2 * 5  # each long-running PUT polled through InProgress to Succeeded
    bodies = {c.path.rsplit("/", 1)[-1]: c.body for c in arm.calls("PUT")}
    # the NSG: SSH from the operator, the federation port from anywhere (mTLS), everything else denied
    rules = [r["properties"] | {"name": r["name"]} for r in bodies[f"{name}-nsg"]["properties"]["securityRules"]]
    from flctl.provisioner.kit_info import read_kit

    port = read_kit(kits / server).server_port
    assert [(r["access"], r["direction"], r["protocol"], r["sourceAddressPrefix"], r["destinationPortRange"],
             r["priority"]) for r in rules] == [
        ("Allow", "Inbound", "Tcp", OPERATOR, "22", 100),
        ("Allow", "Inbound", "Tcp", "0.0.0.0/0", str(port), 101),
        ("Deny", "Inbound", "*", "*", "*", 4096)]
    # the VM: SSH key only, our public key, no password anywhere
    vm = bodies[f"{name}-vm"]
    os_profile = vm["properties"]["osProfile"]
    assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True
    assert "adminPassword" not in os_profile
    key = os_profile["linuxConfiguration"]["ssh"]["publicKeys"][0]
    assert key["path"] == "/home/flctl/.ssh/authorized_keys"
    assert key["keyData"] == (tmp_path / "azure.deploy" / "keys" / f"{server}.pub").read_text().strip()
    assert vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"].endswith(f"{name}-nic")
    # every resource carries the deployment's tags and the user's
    for path, body in bodies.items():
        assert body["tags"]["flctl:deployment"] == deployment, path
        assert body["tags"]["cost-centre"] == "research", path
    assert arm.state.tokens_issued >= 1


def test_destroy_deletes_in_dependency_order_and_a_second_destroy_is_a_no_op(tmp_path: Path, arm: ArmServer,
                                                                            kits: Path) -> None:
    """VMs, disks, NICs, IPs, networks, NSGs, then the group flctl made; nothing is left; twice is fine."""
    # Prepare
    server, site = server_and_site(kits)
    cloud = rollout(write_inventory(tmp_path, arm, kits, [server, site]), arm)
    assert all(r.ok for r in cloud.create("azure", []))
    # Execute
    done = cloud.destroy()
    again = cloud.destroy()
    # Assert
    kinds = [r.kind for r, _ in done]
    assert kinds == ["virtual_machine"] * 2 + ["disk"] * 2 + ["network_interface"] * 2 + ["public_ip"] * 2 + \
        ["virtual_network"] * 2 + ["network_security_group"] * 2 + ["resource_group"]
    assert [c.path.split("/")[-1] for c in arm.calls("DELETE")][-1] == RG
    assert arm.resources() == {}
    assert again == []
    assert not list((tmp_path / "azure.deploy" / "keys").glob("*"))


def test_an_existing_resource_group_is_used_and_never_deleted(tmp_path: Path, arm: ArmServer, kits: Path) -> None:
    """A group that existed before stays, with what others put in it; flctl's own resources go."""
    # Prepare
    server, _ = server_and_site(kits)
    rg = f"/subscriptions/{SUB}/resourcegroups/{RG}"
    arm.state.resources[rg] = {"id": rg, "name": RG, "type": "Microsoft.Resources/resourceGroups"}
    cloud = rollout(write_inventory(tmp_path, arm, kits, [server]), arm)
    assert all(r.ok for r in cloud.create("azure", []))
    # Execute
    done = cloud.destroy()
    # Assert
    assert "resource_group" not in [r.kind for r, _ in done]
    assert list(arm.resources()) == [rg]


def test_a_name_taken_by_someone_else_is_refused(tmp_path: Path, arm: ArmServer, kits: Path) -> None:
    """flctl never adopts or overwrites a resource another deployment made."""
    # Prepare
    server, _ = server_and_site(kits)
    inventory = write_inventory(tmp_path, arm, kits, [server])
    cloud = rollout(inventory, arm)
    state, plans = cloud.plan("azure", [])
    state.save()  # fix the deployment id, then plant a foreign NSG under the planned name
    nsg = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/" \
          f"{plans[0].base_name}-nsg"
    arm.state.resources[nsg.lower()] = {"id": nsg, "name": f"{plans[0].base_name}-nsg", "tags": {"owner": "x"},
                                        "type": "Microsoft.Network/networkSecurityGroups", "properties": {}}
    # Execute
    results = cloud.create("azure", [])
    # Assert
    assert not results[0].ok
    assert "was not made by this deployment" in results[0].message
    assert arm.resources()[nsg.lower()]["tags"] == {"owner": "x"}


def test_cli_creates_with_default_credentials_then_destroys(tmp_path: Path, kits: Path) -> None:
    """`flctl deploy azure --machines-only` and `flctl deploy destroy --yes` through DefaultAzureCredential."""
    # Prepare
    arm = ArmServer(tmp_path, retry_after=1, in_progress_polls=0)
    try:
        server, _ = server_and_site(kits)
        inventory = write_inventory(tmp_path, arm, kits, [server])
        env = arm.identity_env()
        # Execute
        dry = flctl("deploy", "azure", inventory, "--dry-run", "--json", env=env)
        calls_by_dry_run = len(arm.calls())
        made = flctl("deploy", "azure", inventory, "--machines-only", "--json", env=env)
        gone = flctl("deploy", "destroy", inventory, "--yes", env=env)
        refused = flctl("deploy", "destroy", inventory, env=env)
        # Assert
        assert dry.returncode == 0, dry.stderr
        assert [r["kind"] for r in json.loads(dry.stdout)[0]["resources"]] == [
            "resource_group", "network_security_group", "virtual_network", "public_ip", "network_interface",
            "virtual_machine"]
        assert calls_by_dry_run == 0
        assert made.returncode == 0, made.stdout + made.stderr
        assert json.loads(made.stdout)[0]["address"].startswith("203.0.113.")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert arm.resources() == {}
        assert refused.returncode == 0 and "nothing to destroy" in refused.stderr
    finally:
        arm.stop()


def test_no_credentials_is_exit_3_with_what_to_do(tmp_path: Path, kits: Path) -> None:
    """Without any credential source DefaultAzureCredential fails; flctl says how to sign in, exit 3."""
    # Prepare
    arm = ArmServer(tmp_path)
    try:
        server, _ = server_and_site(kits)
        inventory = write_inventory(tmp_path, arm, kits, [server])
        env = {"REQUESTS_CA_BUNDLE": str(arm.ca), "IDENTITY_ENDPOINT": f"{arm.url}/msi/token",
               "IDENTITY_HEADER": "wrong-secret", "PATH": "/usr/bin:/bin"}
        # Execute
        out = flctl("deploy", "azure", inventory, "--machines-only", env=env)
        # Assert
        assert out.returncode == 3, out.stdout + out.stderr
        assert "az login" in out.stderr and "Traceback" not in out.stderr
    finally:
        arm.stop()


def test_bad_azure_blocks_are_named_with_their_lines(tmp_path: Path, kits: Path) -> None:
    """A reserved user name, a bad CIDR and an unknown key are each reported with file, line and field."""
    # Prepare
    server, _ = server_and_site(kits)
    path = tmp_path / "bad.yml"
    path.write_text(f"api_version: 1\nkits: {kits}\nhosts:\n  - participant: {server}\n    provider: azure\n"
                    "    user: admin\n    install_dir: /opt/flctl\n    azure:\n"
                    f"      subscription: {SUB}\n      location: westeurope\n      resource_group: rg\n"
                    "      ssh_cidrs: [10.0.0.1/8]\n      vmsize: big\n")
    # Execute
    with pytest.raises(Exception) as caught:
        load_inventory(path)
    # Assert
    text = str(caught.value)
    assert f"{path}:12: hosts[0].azure.ssh_cidrs" in text and "host bits must be zero" in text
    assert f"{path}:13: hosts[0].azure.vmsize: unknown key 'vmsize'" in text


def test_destroy_refuses_to_delete_a_group_holding_foreign_resources(tmp_path: Path, arm: ArmServer,
                                                                    kits: Path) -> None:
    """Something added to flctl's resource group by hand keeps the group alive; destroy says so."""
    # Prepare
    server, _ = server_and_site(kits)
    cloud = rollout(write_inventory(tmp_path, arm, kits, [server]), arm)
    assert all(r.ok for r in cloud.create("azure", []))
    foreign = f"/subscriptions/{SUB}/resourcegroups/{RG}/providers/microsoft.storage/storageaccounts/data"
    arm.state.resources[foreign] = {"id": foreign, "name": "data", "type": "Microsoft.Storage/storageAccounts"}
    # Execute
    with pytest.raises(DeployError) as caught:
        cloud.destroy()
    # Assert
    assert "holds resources flctl did not create (data)" in str(caught.value)
    state = DeploymentState.load(tmp_path / "azure.deploy")
    assert state is not None and [r.kind for r in state.records] == ["resource_group"]
