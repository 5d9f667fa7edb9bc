"""Revocation and renewal in the provisioner: a signed CRL, and one participant renewed alone."""

from __future__ import annotations

import subprocess

import pytest
from cryptography import x509

from node.revocation import CrlRefused, Revocations
from provisioner.build import provision
from provisioner.errors import ProvisionError, StateError
from provisioner.project_loader import load_project
from provisioner.revocation import revoke

from .conftest import LOCAL_PROJECT


@pytest.fixture
def workspace(tmp_path):
    result = provision(load_project(LOCAL_PROJECT).project, tmp_path / "ws")
    return result


def test_revoke_writes_a_crl_that_openssl_accepts(workspace):
    """The CRL lists the revoked serial, carries a number, and verifies against the CA with openssl."""
    project_dir = workspace.state_dir.parent
    result = revoke(project_dir, "site-2")
    crl = x509.load_pem_x509_crl(result.crl_path.read_bytes())
    site2 = x509.load_pem_x509_certificate((workspace.prod_dir / "site-2/startup/site.crt").read_bytes())
    assert [entry.serial_number for entry in crl] == [site2.serial_number]
    assert result.crl_number == 1
    out = subprocess.run(["openssl", "crl", "-in", result.crl_path, "-CAfile", workspace.state_dir / "ca.crt",
                          "-noout"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "verify OK" in out.stderr + out.stdout
    assert revoke(project_dir, "admin@localhost").crl_number == 2


def test_revoking_an_unknown_participant(workspace):
    with pytest.raises(StateError, match="'nobody' was never issued a certificate here"):
        revoke(workspace.state_dir.parent, "nobody")


def test_node_installs_only_newer_crls_from_its_ca(workspace, tmp_path):
    project_dir = workspace.state_dir.parent
    ca_pem = (workspace.state_dir / "ca.crt").read_bytes()
    holder = Revocations(ca_pem, tmp_path / "node" / "crl.pem")
    first = revoke(project_dir, "site-1").crl_path.read_bytes()
    assert holder.install(first) == 1
    site1 = x509.load_pem_x509_certificate((workspace.prod_dir / "site-1/startup/site.crt").read_bytes())
    assert site1.serial_number in holder
    with pytest.raises(CrlRefused, match="not newer"):
        holder.install(first)
    other = provision(load_project(LOCAL_PROJECT).project, tmp_path / "other")
    foreign = revoke(other.state_dir.parent, "site-1").crl_path.read_bytes()
    foreign_holder = Revocations(ca_pem, tmp_path / "x.pem")
    with pytest.raises(CrlRefused, match="not signed by this project's CA"):
        foreign_holder.install(foreign)
    assert Revocations(ca_pem, tmp_path / "node" / "crl.pem").number == 1, "persisted across restarts"


def test_renew_reissues_one_participant_only(workspace, tmp_path):
    project = load_project(LOCAL_PROJECT).project
    ws = workspace.state_dir.parent.parent
    renewed = provision(project, ws, renew=frozenset({"site-1"}))
    status = {k.name: (k.status, k.reason) for k in renewed.kits}
    assert status["site-1"] == ("reissued", "renewed")
    assert all(s == ("kept", "") for n, s in status.items() if n != "site-1")
    old, new = workspace.prod_dir, renewed.prod_dir
    assert (new / "site-1/startup/site.key").read_bytes() != (old / "site-1/startup/site.key").read_bytes()
    assert (new / "site-2/startup/site.crt").read_bytes() == (old / "site-2/startup/site.crt").read_bytes()
    with pytest.raises(ProvisionError, match="cannot renew ghost"):
        provision(project, ws, renew=frozenset({"ghost"}))


def test_cli_revoke_and_renew(flctl, tmp_path):
    assert flctl("provision", LOCAL_PROJECT, "-w", tmp_path).code == 0
    revoked = flctl("provision", "revoke", "site-2", "-p", LOCAL_PROJECT, "-w", tmp_path, "--json")
    assert revoked.code == 0 and revoked.json()["crl_number"] == 1
    renewed = flctl("provision", "renew", "site-2", "-p", LOCAL_PROJECT, "-w", tmp_path, "--json")
    assert renewed.code == 0
    assert {k["name"]: k["status"] for k in renewed.json()["kits"]}["site-2"] == "reissued"
    unknown = flctl("provision", "revoke", "ghost", "-p", LOCAL_PROJECT, "-w", tmp_path)
    assert unknown.code == 1 and "never issued" in unknown.stderr
