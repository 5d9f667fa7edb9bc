"""Provisioning a workspace: layout, modes, zips, re-runs, encryption at rest, and atomicity."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from flctl.provisioner import build
from flctl.provisioner.build import provision
from flctl.provisioner.errors import PassphraseError, StateError
from flctl.provisioner.project_loader import load_project
from flctl.provisioner.signing import verify_kit
from flctl.provisioner.state import locked

BASE = """\
api_version: 1
name: demo
server: {name: fl.example.org, org: acme, port: 9443, hosts: [10.0.0.5]}
sites: [{name: site-1, org: org_a}, {name: site-2, org: org_b}]
admins: [{name: admin@example.org, org: acme, role: project_admin}]
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_of_a_fresh_workspace(local_kits):
    """prod_00 holds a folder and a zip per participant; state/ holds the CA."""
    prod = local_kits.prod_dir
    assert prod.name == "prod_00"
    assert sorted(p.name for p in prod.iterdir()) == sorted(
        [n for k in local_kits.kits for n in (k.name, f"{k.name}.zip")])
    assert sorted(p.name for p in (prod / "site-1/startup").iterdir()) == [
        "ca.crt", "node.yml", "signature.json", "site.crt", "site.key", "start.sh", "stop.sh"]
    assert sorted(p.name for p in (prod / "site-1/local").iterdir()) == ["policy.yml", "privacy.yml",
                                                                        "resources.yml"]
    assert sorted(p.name for p in (prod / "admin@localhost/startup").iterdir()) == [
        "admin.crt", "admin.key", "ca.crt", "console.yml", "signature.json"]
    state = local_kits.state_dir
    assert sorted(p.name for p in state.iterdir()) == ["ca.crt", "ca.key", "issued.json"]
    assert not list(prod.parent.glob(".prod_*"))


def test_private_keys_are_private(local_kits):
    """Keys are 0600, scripts 0755, and the state folder 0700."""
    prod = local_kits.prod_dir
    assert mode(local_kits.state_dir / "ca.key") == 0o600
    assert mode(local_kits.state_dir / "issued.json") == 0o600
    assert mode(local_kits.state_dir) == 0o700
    assert mode(prod / "site-1/startup/site.key") == 0o600
    assert mode(prod / "site-1/startup/start.sh") == 0o755
    assert mode(prod / "site-1/startup/ca.crt") == 0o644


def test_node_config_names_server_and_heartbeat(local_kits):
    config = yaml.safe_load((local_kits.prod_dir / "site-1/startup/node.yml").read_text())
    assert config == {
        "api_version": 1, "project": "local", "name": "site-1", "kind": "site", "org": "local",
        "server": {"host": "localhost", "port": 8443},
        "heartbeat": {"interval_s": 2.0, "timeout_s": 10.0},
        "tls": {"ca": "ca.crt", "cert": "site.crt", "key": "site.key"},
    }
    server = yaml.safe_load((local_kits.prod_dir / "localhost/startup/node.yml").read_text())
    assert server["listen"] == {"host": "0.0.0.0", "port": 8443}
    admin = yaml.safe_load((local_kits.prod_dir / "admin@localhost/startup/console.yml").read_text())
    assert admin["role"] == "project_admin" and admin["server"] == {"host": "localhost", "port": 8443}


def test_zip_holds_the_same_kit_with_modes(local_kits, tmp_path):
    """Each zip unpacks to a byte-identical kit that verifies, keys still 0600."""
    with zipfile.ZipFile(local_kits.prod_dir / "site-1.zip") as archive:
        names = archive.namelist()
        assert all(n.startswith("site-1/") for n in names)
        for info in archive.infolist():
            path = tmp_path / info.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(info))
            path.chmod(info.external_attr >> 16 & 0o777)
            assert path.read_bytes() == (local_kits.prod_dir / info.filename).read_bytes()
    assert mode(tmp_path / "site-1/startup/site.key") == 0o600
    assert verify_kit(tmp_path / "site-1").ok


def test_adding_a_site_keeps_existing_certificates_identical(write_project, tmp_path):
    """Re-running with a new site reuses the CA, keeps old certificates and keys, writes prod_01."""
    ws = tmp_path / "ws"
    first = provision(load_project(write_project(BASE)).project, ws)
    more = BASE.replace("{name: site-2, org: org_b}]", "{name: site-2, org: org_b}, {name: site-3, org: org_c}]")
    second = provision(load_project(write_project(more)).project, ws)
    assert first.ca_created and not second.ca_created
    assert second.prod_dir.name == "prod_01"
    assert {k.name: k.status for k in second.kits} == {
        "fl.example.org": "kept", "site-1": "kept", "site-2": "kept", "admin@example.org": "kept", "site-3": "new"}
    for kit in first.kits:
        for name in ("ca.crt", f"{kit.kind}.crt", f"{kit.kind}.key"):
            old = first.prod_dir / kit.name / "startup" / name
            assert (second.prod_dir / kit.name / "startup" / name).read_bytes() == old.read_bytes()
    assert verify_kit(second.prod_dir / "site-3").ok
    assert (first.prod_dir / "site-1").is_dir(), "earlier prod folders stay untouched"


def test_changed_org_reissues_only_that_certificate(write_project, tmp_path):
    ws = tmp_path / "ws"
    first = provision(load_project(write_project(BASE)).project, ws)
    second = provision(load_project(write_project(BASE.replace("org: org_b", "org: org_x"))).project, ws)
    status = {k.name: (k.status, k.reason) for k in second.kits}
    assert status["site-2"] == ("reissued", "org changed from org_b to org_x")
    assert status["site-1"] == ("kept", "")
    assert (second.prod_dir / "site-2/startup/site.crt").read_bytes() != (
        first.prod_dir / "site-2/startup/site.crt").read_bytes()


def test_changed_hosts_reissue_the_server(write_project, tmp_path):
    ws = tmp_path / "ws"
    provision(load_project(write_project(BASE)).project, ws)
    second = provision(load_project(write_project(BASE.replace("10.0.0.5", "10.0.0.6"))).project, ws)
    assert {k.name: k.status for k in second.kits}["fl.example.org"] == "reissued"


def test_certificates_expire_as_configured(write_project, tmp_path):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    result = provision(load_project(write_project(BASE + "certs: {valid_days: 30}\n")).project, tmp_path, now=now)
    assert {k.not_after for k in result.kits} == {now + dt.timedelta(days=30)}


def test_passphrase_encrypts_keys_at_rest(write_project, tmp_path):
    """With a passphrase the CA key and stored keys are encrypted; it is needed to provision again."""
    ws = tmp_path / "ws"
    project = load_project(write_project(BASE)).project
    result = provision(project, ws, passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (result.state_dir / "ca.key").read_bytes()
    issued = (result.state_dir / "issued.json").read_text()
    assert "ENCRYPTED PRIVATE KEY" in issued and "BEGIN PRIVATE KEY" not in issued
    assert b"BEGIN PRIVATE KEY" in (result.prod_dir / "site-1/startup/site.key").read_bytes()
    with pytest.raises(PassphraseError, match="encrypted; give its passphrase"):
        provision(project, ws)
    with pytest.raises(PassphraseError, match="does not unlock"):
        provision(project, ws, passphrase=b"wrong")
    again = provision(project, ws, passphrase=b"correct horse")
    assert (again.prod_dir / "site-1/startup/site.key").read_bytes() == (
        result.prod_dir / "site-1/startup/site.key").read_bytes()


def test_failure_midway_leaves_nothing_half_written(write_project, tmp_path, monkeypatch):
    """A crash while writing kits leaves no prod folder, no temporary folder and the state as it was."""
    ws = tmp_path / "ws"
    project = load_project(write_project(BASE)).project
    first = provision(project, ws)
    before = {p.name: p.read_bytes() for p in first.state_dir.iterdir()}
    calls = {"n": 0}
    real = build.write_zip

    def failing_zip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "write_zip", failing_zip)
    more = BASE.replace("{name: site-2, org: org_b}]", "{name: site-2, org: org_b}, {name: site-3, org: org_c}]")
    with pytest.raises(OSError, match="No space"):
        provision(load_project(write_project(more)).project, ws)
    assert sorted(p.name for p in (ws / "demo").iterdir()) == [".lock", "prod_00", "state"]
    assert {p.name: p.read_bytes() for p in first.state_dir.iterdir()} == before


def test_concurrent_provisioning_is_refused(write_project, tmp_path):
    project = load_project(write_project(BASE)).project
    with locked(tmp_path / "demo"), pytest.raises(StateError, match="another flctl is provisioning"):
        provision(project, tmp_path)


def test_damaged_state_is_reported(write_project, tmp_path):
    project = load_project(write_project(BASE)).project
    result = provision(project, tmp_path)
    (result.state_dir / "issued.json").unlink()
    with pytest.raises(StateError, match=r"incomplete \(issued.json is missing\)"):
        provision(project, tmp_path)


def test_thousand_sites_provision(write_project, tmp_path):
    """1000 sites: every kit is written and signed (speed is measured in bench/, not here)."""
    sites = "".join(f"  - {{name: site-{i}, org: org_{i % 7}}}\n" for i in range(1000))
    text = "api_version: 1\nname: big\nserver: {name: localhost, org: o}\nsites:\n" + sites
    result = provision(load_project(write_project(text)).project, tmp_path)
    assert len(result.kits) == 1001
    assert verify_kit(result.prod_dir / "site-999").ok


@pytest.fixture
def umask_022():
    """The usual umask, under which a file created without an explicit mode is readable by everyone."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def stat_mode(path: Path) -> str:
    """The mode as coreutils' `stat` reports it (octal, no leading zero)."""
    return subprocess.run(["stat", "-c", "%a", path], capture_output=True, text=True, check=True).stdout.strip()


def test_kit_zips_and_folders_are_private_under_umask_022(write_project, tmp_path, umask_022):
    """Every kit zip is 0600 and every kit folder 0700, also those written by forked helpers."""
    result = provision(load_project(write_project(BASE)).project, tmp_path / "ws", workers=2)
    assert mode(result.prod_dir) == 0o700
    for kit in result.kits:
        assert mode(kit.zip_path) == 0o600 and stat_mode(kit.zip_path) == "600", kit.name
        assert mode(kit.kit_dir) == 0o700 and stat_mode(kit.kit_dir) == "700", kit.name
        for folder in (kit.kit_dir / "startup", kit.kit_dir / "local"):
            assert not folder.exists() or mode(folder) == 0o700, folder
