"""Revocation and renewal in the provisioner: a signed CRL, and one participant renewed alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from flctl.node.config.kit import load_kit
from flctl.node.config.local_files import policy_and_revocations
from flctl.node.security.revocation import CrlRefused, Revocations, check_crl
from flctl.provisioner.build import provision
from flctl.provisioner.errors import KitError, ProvisionError, StateError
from flctl.provisioner.project_loader import load_project
from flctl.provisioner.revocation import revoke

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


# ---------------------------------------------------------------- fail closed (issue 18)

def flip_in_signature(pem: bytes) -> bytes:
    """One changed character in the CRL's last base64 line (its signature), the rest intact."""
    lines = pem.decode().splitlines()
    last = len(lines) - 2  # the line before -----END X509 CRL-----
    line = lines[last].rstrip("=")
    i = len(line) // 2
    lines[last] = line[:i] + ("A" if line[i] != "A" else "B") + lines[last][i + 1:]
    return ("\n".join(lines) + "\n").encode()


def start_node(kit, workspace, timeout=60):
    """`flctl node start KIT` in a process of its own; (exit code, output) when it ends."""
    out = subprocess.run([str(Path(sys.executable).parent / "flctl"), "node", "start", str(kit), "-w", str(workspace)],
                         capture_output=True, text=True, timeout=timeout, check=False)
    return out.returncode, out.stdout + out.stderr


def test_a_crl_with_one_changed_character_stops_the_node_at_start(workspace, tmp_path):
    """A corrupt local/crl.pem (one flipped character) stops server and site at start with exit 2, naming it."""
    good = revoke(workspace.state_dir.parent, "admin@localhost").crl_path.read_bytes()
    bad = flip_in_signature(good)
    assert bad != good
    for name in ("localhost", "site-1"):
        kit = tmp_path / name
        shutil.copytree(workspace.prod_dir / name, kit)
        (kit / "local" / "crl.pem").write_bytes(bad)
        code, output = start_node(kit, tmp_path / f"{name}-ws")
        assert code == 2, output
        assert f"{kit / 'local' / 'crl.pem'}" in output and "signature does not verify" in output
        assert "Traceback" not in output
        assert not (tmp_path / f"{name}-ws" / "crl.pem").exists(), "nothing installed from a refused CRL"


def test_a_damaged_installed_crl_stops_the_node_too(workspace, tmp_path):
    """The node's own installed copy (WORKSPACE/crl.pem) damaged: exit 2 naming it, not an empty revocation list."""
    good = revoke(workspace.state_dir.parent, "site-2").crl_path.read_bytes()
    kit = tmp_path / "site-1"
    shutil.copytree(workspace.prod_dir / "site-1", kit)
    (tmp_path / "node-ws").mkdir()
    (tmp_path / "node-ws" / "crl.pem").write_bytes(good[:200])
    code, output = start_node(kit, tmp_path / "node-ws")
    assert code == 2 and f"{tmp_path / 'node-ws' / 'crl.pem'}" in output
    assert "not a PEM certificate revocation list" in output


def test_a_crl_past_its_next_update_stops_the_node_and_provision_crl_renews_it(workspace, tmp_path, flctl):
    """A CRL past its next update: refused at start (exit 2); `flctl provision crl` issues a fresh one that starts."""
    import datetime as dt

    project_dir = workspace.state_dir.parent
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    old = revoke(project_dir, "site-2", now=past).crl_path.read_bytes()
    ca_pem = (workspace.state_dir / "ca.crt").read_bytes()
    with pytest.raises(CrlRefused, match="out of date"):
        check_crl(old, ca_pem)
    kit = tmp_path / "site-1"
    shutil.copytree(workspace.prod_dir / "site-1", kit)
    (kit / "local" / "crl.pem").write_bytes(old)
    with pytest.raises(KitError, match=r"local/crl.pem: CRL 1 is out of date: its next update was"):
        policy_and_revocations(load_kit(kit), tmp_path / "node-ws")
    ws = workspace.state_dir.parent.parent
    renewed = flctl("provision", "crl", "-p", LOCAL_PROJECT, "-w", ws, "--json")
    assert renewed.code == 0, renewed.stderr
    assert renewed.json()["crl_number"] == 2 and renewed.json()["revoked"] == 1
    fresh = check_crl((workspace.state_dir / "crl.pem").read_bytes(), ca_pem)
    site2 = x509.load_pem_x509_certificate((workspace.prod_dir / "site-2/startup/site.crt").read_bytes())
    assert fresh.number == 2 and site2.serial_number in fresh.serials
    (kit / "local" / "crl.pem").write_bytes(fresh.pem)
    _, revocations = policy_and_revocations(load_kit(kit), tmp_path / "node-ws")
    assert revocations.number == 2 and site2.serial_number in revocations


def test_provision_revoke_refuses_to_publish_a_damaged_crl(workspace, flctl):
    """The publish path checks the CRL against the project CA before sending: a damaged state/crl.pem is refused."""
    ws = workspace.state_dir.parent.parent
    assert flctl("provision", "crl", "-p", LOCAL_PROJECT, "-w", ws).code == 0
    crl = workspace.state_dir / "crl.pem"
    crl.write_bytes(flip_in_signature(crl.read_bytes()))
    from flctl.console.cli.provision.revoke import _publish

    with pytest.raises(StateError, match=r"signature does not verify.*not published"):
        _publish(crl, workspace.prod_dir / "admin@localhost")


def test_an_edited_local_crl_is_read_while_the_node_runs_and_a_bad_edit_keeps_the_last_good_one(workspace, tmp_path):
    """local/crl.pem is re-read when it changes: a newer CRL applies at the next check; a damaged one is refused
    loudly (on_refused) and the CRL in force stays."""
    project_dir = workspace.state_dir.parent
    ca_pem = (workspace.state_dir / "ca.crt").read_bytes()
    site1 = x509.load_pem_x509_certificate((workspace.prod_dir / "site-1/startup/site.crt").read_bytes())
    site2 = x509.load_pem_x509_certificate((workspace.prod_dir / "site-2/startup/site.crt").read_bytes())
    local = tmp_path / "kit" / "local" / "crl.pem"
    local.parent.mkdir(parents=True)
    local.write_bytes(revoke(project_dir, "site-1").crl_path.read_bytes())
    refused: list[tuple[str, str]] = []
    holder = Revocations(ca_pem, tmp_path / "node-ws" / "crl.pem", local,
                         lambda origin, why: refused.append((origin, why)))
    assert site1.serial_number in holder and site2.serial_number not in holder
    second = revoke(project_dir, "site-2").crl_path.read_bytes()
    local.write_bytes(flip_in_signature(second))
    os.utime(local, ns=(1, 1))
    assert site2.serial_number not in holder and site1.serial_number in holder, "the last good CRL stays in force"
    assert len(refused) == 1 and refused[0][0] == str(local), "refused once, loudly"
    assert "not signed by this project's CA" in refused[0][1]
    assert site1.serial_number in holder and len(refused) == 1
    local.write_bytes(second)
    assert site2.serial_number in holder and holder.number == 2
    assert (tmp_path / "node-ws" / "crl.pem").read_bytes() == second, "installed for the next start"


def test_a_running_server_reads_local_crl_edits_and_keeps_the_last_good_crl(tmp_path):
    """On a running federation: a CRL copied to the server's local/crl.pem applies at the revoked admin's next call
    (exit 3); a damaged edit is refused (audited, logged) and the CRL in force stays; an out-of-date CRL published
    with `--kit` is refused by the server with a clear status."""
    import datetime as dt

    from flctl.node import errors
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.security.audit import read

    from .federation import make_federation, running

    admins = [("pa@x.org", "x", "project_admin"), ("one@x.org", "x", "member"), ("two@x.org", "x", "member")]
    fed = make_federation(tmp_path, sites=1, name="crlrun", admins=admins)
    project_dir = tmp_path / "ws" / "crlrun"
    local = fed.kit("localhost") / "local" / "crl.pem"
    with running(fed):
        assert fed.flctl("job", "ls", "--kit", fed.kit("one@x.org")).returncode == 0
        local.write_bytes(revoke(project_dir, "one@x.org").crl_path.read_bytes())
        refused = fed.flctl("job", "ls", "--kit", fed.kit("one@x.org"))
        assert refused.returncode == 3 and "revoked" in refused.stderr, "applied without a restart"
        damaged = flip_in_signature(revoke(project_dir, "two@x.org").crl_path.read_bytes())
        local.write_bytes(damaged)
        assert fed.flctl("job", "ls", "--kit", fed.kit("two@x.org")).returncode == 0, "CRL 2 was refused"
        assert fed.flctl("job", "ls", "--kit", fed.kit("one@x.org")).returncode == 3, "CRL 1 stays in force"
        audit = read(fed.kit("localhost") / "workspace" / "audit.jsonl")
        assert any(r["action"] == "crl.refused" and r.get("file") == str(local) for r in audit)
        assert "refused a CRL, CRL 1 stays in force" in (fed.kit("localhost") / "workspace" / "node.log").read_text()
        site_crl = fed.kit("site-1") / "workspace" / "crl.pem"
        assert wait_for(site_crl.exists), "the site receives CRL 1 with a heartbeat"
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
        stale = revoke(project_dir, "two@x.org", now=past).crl_path.read_bytes()
        with AdminClient.from_kit(fed.kit("pa@x.org")) as admin, pytest.raises(errors.BadRequest, match="out of date"):
            admin.publish_crl(stale)


def wait_for(condition, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_site_refuses_a_bad_crl_from_a_heartbeat_loudly(tmp_path):
    """A server double sends a CRL with one changed character in every heartbeat reply: the site refuses it, logs an
    error and audits crl.refused once, installs nothing, and keeps running."""
    import threading
    from concurrent import futures

    import grpc

    from flctl.node.security.audit import read
    from flctl.node.security.tls import server_credentials
    from flctl.node.wire.proto import flctl_pb2 as pb
    from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

    from .federation import make_federation

    fed = make_federation(tmp_path, sites=1, name="hbcrl")
    bad = flip_in_signature(revoke(tmp_path / "ws" / "hbcrl", "site-1").crl_path.read_bytes())
    ended, beats = threading.Event(), [0]

    class Double(pb_grpc.FederationServicer):
        def Register(self, request, context):
            return pb.RegisterReply(project="hbcrl", heartbeat_interval_s=0.5)

        def Heartbeat(self, request, context):
            beats[0] += 1
            return pb.HeartbeatReply(crl_pem=bad)

        def Commands(self, request, context):
            while context.is_active() and not ended.wait(0.2):
                pass
            return iter(())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_FederationServicer_to_server(Double(), server)
    server.add_secure_port(f"127.0.0.1:{fed.port}", server_credentials(load_kit(fed.kit("localhost"))))
    server.start()
    workspace = fed.kit("site-1") / "workspace"
    try:
        site = fed.start("site-1")
        audit = workspace / "audit.jsonl"
        assert wait_for(lambda: audit.exists() and any(r["action"] == "crl.refused" for r in read(audit)), 60), \
            fed.logs()
        assert "refused a CRL, CRL 0 stays in force" in (workspace / "node.log").read_text()
        seen = beats[0]
        assert wait_for(lambda: beats[0] >= seen + 4), "more heartbeats with the same bad CRL"
        assert site.poll() is None, "the site keeps running"
    finally:
        ended.set()
        fed.stop_all()
        server.stop(0)
    refused = [r for r in read(workspace / "audit.jsonl") if r["action"] == "crl.refused"]
    assert len(refused) == 1 and refused[0]["file"] == "the CRL the server sent"
    assert "not signed by this project's CA" in refused[0]["reason"]
    assert not (workspace / "crl.pem").exists(), "nothing installed"
