"""Security end to end: authorization from certificates, signed jobs, site policies, audit, revocation, mTLS."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flctl.node import errors
from flctl.node.admin.admin_client import AdminClient
from flctl.node.security.audit import read, verify
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .federation import Federation, make_federation, running
from .test_authz import EXPECTED

ADMINS = [("pa@a.org", "a", "project_admin"), ("oa@a.org", "a", "org_admin"), ("lead@a.org", "a", "lead"),
          ("lead2@a.org", "a", "lead"), ("member@a.org", "a", "member"), ("lead@b.org", "b", "lead")]
WAITING_JOB = """\
api_version: 1
name: {name}
workflow: {{type: fedavg, args: {{rounds: 1, round_timeout_s: 30}}}}
sites: [{sites}]
min_sites: 1
"""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running(make_federation(tmp_path_factory.mktemp("sec"), sites=1, name="secure", admins=ADMINS)) as fed:
        yield fed


def client(fed: Federation, admin: str) -> AdminClient:
    return AdminClient.from_kit(fed.kit(admin))


def make_job(root: Path, name: str, sites: str = "site-9") -> Path:
    (root / name / "app").mkdir(parents=True, exist_ok=True)
    (root / name / "job.yml").write_text(WAITING_JOB.format(name=name, sites=sites))
    (root / name / "app" / "train.py").write_text(
        "import flctl.client as fl\nfl.init()\nwhile fl.running():\n    m = fl.receive()\n"
        "    fl.send(fl.Model(params=m.params, num_examples=1))\n")
    return root / name


def submit_as(fed: Federation, admin: str, job: Path) -> str:
    with client(fed, admin) as c:
        return c.submit_job(job)


@pytest.fixture(scope="module")
def jobs(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Jobs that wait for an absent site, one per submitter: the objects of the matrix."""
    root = tmp_path_factory.mktemp("jobs")
    return {admin: submit_as(fed, admin, make_job(root, admin.split("@")[0] + "-" + admin[-5:-4]))
            for admin in ("pa@a.org", "lead@a.org", "lead2@a.org", "lead@b.org")}


def relations(actor: str, jobs: dict[str, str]) -> dict[str, str]:
    """own / same_org / other_org job ids for `actor` (org admins and members own none)."""
    out = {"same_org": jobs["lead2@a.org"] if actor == "lead@a.org" else jobs["lead@a.org"],
           "other_org": jobs["lead@b.org"]}
    if actor in jobs:
        out["own"] = jobs[actor]
    return out


@pytest.mark.parametrize(("actor", "role"), [(a, r) for a, o, r in ADMINS if o == "a" and a != "lead2@a.org"])
def test_role_matrix_over_grpc(fed, jobs, tmp_path, actor, role):
    """Every command as every role, on own, same-org and other-org jobs, enforced by the real server."""
    with client(fed, actor) as admin:
        for relation, job_id in relations(actor, jobs).items():
            listed = job_id in {j.id for j in admin.list_jobs()}
            assert listed == (relation in EXPECTED[role]["ls"]), (actor, "ls", relation)
            calls = {
                "show": lambda j=job_id: admin.get_job(j),
                "logs": lambda j=job_id: list(admin.logs(j)),
                "watch": lambda j=job_id: next(iter(admin.watch(j))),
                "download": lambda j=job_id: admin.download_job(j, tmp_path / actor),
            }
            for command, call in calls.items():
                allowed = relation in EXPECTED[role][command]
                try:
                    call()
                    got = True
                except errors.NotPermitted:
                    got = False
                assert got == allowed, (actor, command, relation)
        submit_allowed = "own" in EXPECTED[role]["submit"]
        try:
            admin.submit_job(make_job(tmp_path, "probe"))
            got = True
        except errors.NotPermitted as exc:
            assert "lacks the right submit_job" in str(exc)
            got = False
        assert got == submit_allowed


def test_abort_rights_follow_ownership(fed, tmp_path):
    """A lead cannot abort a colleague's job, an org admin can, another org's lead cannot: exit 4 via the CLI."""
    job_id = submit_as(fed, "lead@a.org", make_job(tmp_path, "abortme"))
    env_as = {"lead2@a.org": 4, "lead@b.org": 4, "member@a.org": 4}
    for admin, code in env_as.items():
        out = fed.flctl("job", "abort", job_id, "--kit", fed.kit(admin))
        assert out.returncode == code, (admin, out.stderr)
        assert "not permitted" in out.stderr
    out = fed.flctl("job", "abort", job_id, "--kit", fed.kit("oa@a.org"), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "ABORTED"


def test_bundle_changed_after_signing_is_refused_and_audited(fed, tmp_path, monkeypatch):
    """The server refuses a bundle whose signature does not match, says so, and writes it to the audit log."""
    import flctl.node.jobs.job_signing as signing

    real = signing.new_claims
    monkeypatch.setattr(signing, "new_claims", lambda data, *args, **kw: real(data + b"tampered", *args, **kw))
    with client(fed, "lead@a.org") as admin, pytest.raises(errors.BadRequest, match="changed after it was signed"):
        admin.submit_job(make_job(tmp_path, "forged"))
    records = read(fed.kit("localhost") / "workspace" / "audit.jsonl")
    assert any(r["action"] == "job.submit" and "changed after it was signed" in r["result"] for r in records)


def test_site_policy_refuses_a_signer(fed, tmp_path):
    """A site whose policy allows only pa@a.org refuses lead@a.org's job; the job says so; the site audits it."""
    policy = fed.kit("site-1") / "local" / "policy.yml"
    original = policy.read_text()
    policy.write_text(original.replace("allowed_signers: any", "allowed_signers: [pa@a.org]"))
    try:
        job_id = submit_as(fed, "lead@a.org", make_job(tmp_path, "refused", sites="site-1"))
        deadline = time.monotonic() + 30
        with client(fed, "pa@a.org") as admin:
            job = admin.get_job(job_id)
            while time.monotonic() < deadline and not job.ended:
                time.sleep(0.3)
                job = admin.get_job(job_id)
        assert job.status == "FAILED"
        assert "site-1 refuses the job: not permitted: jobs signed by lead@a.org (a)" in job.error
        site_audit = read(fed.kit("site-1") / "workspace" / "audit.jsonl")
        assert any(r["action"] == "job.refuse" and r["job_id"] == job_id for r in site_audit)
    finally:
        policy.write_text(original)


def test_a_signed_job_runs_and_every_log_verifies(fed, tmp_path):
    """A permitted job runs; the server's and the site's audit logs are intact and record it."""
    job_id = submit_as(fed, "pa@a.org", make_job(tmp_path, "runs", sites="site-1"))
    with client(fed, "pa@a.org") as admin:
        for _event in admin.watch(job_id):
            pass
        assert admin.get_job(job_id).status == "FINISHED"
    for node in ("localhost", "site-1"):
        log = fed.kit(node) / "workspace" / "audit.jsonl"
        assert verify(log).ok
    server = read(fed.kit("localhost") / "workspace" / "audit.jsonl")
    assert any(r["action"] == "job.finished" and r["job_id"] == job_id for r in server)
    assert any(r["action"] == "job.submit" and r["actor"] == "pa@a.org" and r["result"] == "ok" for r in server)
    site = read(fed.kit("site-1") / "workspace" / "audit.jsonl")
    assert any(r["action"] == "job.start" and r["job_id"] == job_id for r in site)


def test_revoked_admin_is_refused_without_a_restart(fed):
    """`provision revoke --kit` publishes the CRL; the revoked admin's next call fails with exit 3."""
    before = fed.flctl("job", "ls", "--kit", fed.kit("member@a.org"))
    assert before.returncode == 0
    out = fed.flctl("provision", "revoke", "member@a.org", "-p", fed.root / "project.yml", "-w", fed.root / "ws",
                    "--kit", fed.kit("pa@a.org"), "--json")
    assert out.returncode == 0, out.stderr
    after = fed.flctl("job", "ls", "--kit", fed.kit("member@a.org"))
    assert after.returncode == 3
    assert "revoked" in after.stderr
    assert fed.flctl("job", "ls", "--kit", fed.kit("lead@a.org")).returncode == 0
    site_crl = fed.kit("site-1") / "workspace" / "crl.pem"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not site_crl.exists():
        time.sleep(0.2)
    assert site_crl.exists(), "sites receive the new CRL with their next heartbeat"


def test_only_a_project_admin_publishes_crls(fed):
    crl = (fed.root / "ws" / "secure" / "state" / "crl.pem")
    if not crl.exists():
        pytest.fail("the revocation test above writes the CRL first")
    with client(fed, "lead@a.org") as admin, pytest.raises(errors.NotPermitted, match="only a project_admin"):
        admin.publish_crl(crl.read_bytes())


def test_expired_admin_certificate_is_refused(fed):
    """An admin kit whose certificate expired cannot connect (exit 3)."""
    text = (fed.root / "project.yml").read_text().replace(
        "  - {name: lead@b.org", "  - {name: old@a.org, org: a, role: lead}\n  - {name: lead@b.org")
    project = project_from_document(parse_yaml(text + "certs: {valid_days: 1}\n", "p.yml")).project
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    result = provision(project, fed.root / "ws", now=past)
    kit = result.prod_dir / "old@a.org"
    out = fed.flctl("job", "ls", "--kit", kit)
    assert out.returncode == 2 and "admin.crt expired on" in out.stderr, "the client checks its own kit first"
    startup = kit / "startup"
    creds = grpc.ssl_channel_credentials((startup / "ca.crt").read_bytes(), (startup / "admin.key").read_bytes(),
                                         (startup / "admin.crt").read_bytes())
    with grpc.secure_channel(f"localhost:{fed.port}", creds) as chan, pytest.raises(grpc.RpcError) as info:
        pb_grpc.AdminStub(chan).WhoAmI(pb.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, "and the server refuses it in the TLS handshake"


def test_malformed_calls_get_clear_statuses_and_the_server_keeps_serving(fed):
    """Results without a header, unknown jobs, oversized messages: clear codes; everyone else is served."""
    from flctl.node.config.kit import load_kit
    from flctl.node.security.tls import channel

    site = load_kit(fed.kit("site-1"), verify=False)
    with channel(site) as chan:
        stub = pb_grpc.FederationStub(chan)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitResult(iter([pb.ResultMessage(chunk=b"x")]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            list(stub.FetchBundle(pb.JobRef(job_id="nosuchjob"), timeout=10))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            stub.Report(pb.ReportRequest(job_id="nosuchjob", status="failed"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            stub.Report(pb.ReportRequest(job_id="x", logs=[pb.LogLine(line="y" * (9 * 1024 * 1024))]), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with client(fed, "pa@a.org") as admin:
        assert admin.whoami().name == "pa@a.org"
        assert {s.name for s in admin.list_sites()} == {"site-1"}
