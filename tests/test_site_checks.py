"""A real site daemon checks what a (compromised) server sends it: job ids that become paths, and signed bundles
replayed under another id, sent to another site, or out of their time window."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.node.jobs.job_signing import new_claims, sign_claims
from flctl.node.wire.proto import flctl_pb2 as pb

from .federation import Federation, make_federation
from .server_double import ServerDouble

BUNDLE = b"PK\x03\x04 the bundle of a job signed long ago"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, ServerDouble]]:
    """site-1, a real `flctl node start` daemon, connected to a server double on the project's port."""
    fed = make_federation(tmp_path_factory.mktemp("double"), sites=2)
    with ServerDouble(fed.kit("localhost"), fed.port) as server:
        try:
            fed.start("site-1")
            assert server.registered.wait(60), fed.logs()
            yield fed, server
        finally:
            fed.stop_all()


def signed_start(fed: Federation, job_id: str, *, signed_id: str | None = None, sites: list[str] | str = "all",
                 now: float | None = None, valid_for_s: float = 3600, name: str = "old-job") -> pb.StartJob:
    """A StartJob for BUNDLE as job `job_id`, signed by the project admin as job `signed_id` (default: the same)."""
    admin = fed.admin_kit / "startup"
    claims = new_claims(BUNDLE, name, sites, job_id=signed_id or job_id, now=now, valid_for_s=valid_for_s).to_json()
    return pb.StartJob(job_id=job_id, name=name, bundle_sha256=hashlib.sha256(BUNDLE).hexdigest(),
                       submitter=fed.admin, submitter_org="hub", signer_cert_pem=(admin / "admin.crt").read_bytes(),
                       signature=sign_claims(claims, (admin / "admin.key").read_bytes()), claims_json=claims)


def site_audit(fed: Federation) -> list[dict[str, object]]:
    path = fed.kit("site-1") / "workspace" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def refused_in_audit(fed: Federation, job_id: str) -> str:
    for record in site_audit(fed):
        if record.get("action") == "job.refuse" and record.get("job_id") == job_id:
            return str(record.get("reason"))
    raise AssertionError(f"no job.refuse record for {job_id!r} in the site's audit log")


def test_a_traversal_job_id_is_refused_and_nothing_outside_the_workspace_is_touched(site):
    """A job id of `../../startup` is refused before any folder is made or removed; the site says why."""
    fed, server = site
    startup = fed.kit("site-1") / "startup"
    before = sorted(p.name for p in startup.iterdir())
    server.send(signed_start(fed, "../../startup"), BUNDLE)
    error = server.failure_of("../../startup")
    assert "refuses the job" in error and "job id" in error and "'../../startup'" in error
    assert "job id" in refused_in_audit(fed, "../../startup")
    assert sorted(p.name for p in startup.iterdir()) == before and (startup / "site.key").is_file()
    assert not (fed.kit("site-1") / "workspace" / "jobs" / "startup").exists()


def test_a_signed_bundle_replayed_under_a_new_job_id_is_refused(site):
    """A bundle signed as job aaa111 and sent as job bbb222 is refused, naming both ids."""
    fed, server = site
    server.send(signed_start(fed, "bbb222", signed_id="aaa111"), BUNDLE)
    error = server.failure_of("bbb222")
    assert "signed for job aaa111, not for job bbb222" in error
    assert "signed for job aaa111" in refused_in_audit(fed, "bbb222")
    assert not (fed.kit("site-1") / "workspace" / "jobs" / "bbb222" / "job").exists()


def test_a_bundle_signed_for_another_site_is_refused(site):
    """A job signed for site-2 alone, sent to site-1, is refused."""
    fed, server = site
    server.send(signed_start(fed, "ccc333", sites=["site-2"]), BUNDLE)
    assert "signed for site-2, not for site-1" in server.failure_of("ccc333")
    assert "not for site-1" in refused_in_audit(fed, "ccc333")


def test_a_bundle_out_of_its_time_window_is_refused(site):
    """A job whose signature expired (signed ten days ago for one day) is refused, naming when it expired."""
    fed, server = site
    server.send(signed_start(fed, "ddd444", now=time.time() - 10 * 86400, valid_for_s=86400), BUNDLE)
    assert "signature expired at" in server.failure_of("ddd444")
    assert "expired" in refused_in_audit(fed, "ddd444")


def test_an_old_format_signature_is_refused_clearly(site):
    """A v1 signature (no claims) is refused with a sentence, and the daemon goes on."""
    fed, server = site
    start = signed_start(fed, "eee555")
    start.ClearField("claims_json")
    server.send(start, BUNDLE)
    assert "old format" in server.failure_of("eee555")
    assert fed.processes["site-1"].poll() is None


def test_job_process_refuses_a_traversal_job_id(tmp_path: Path):
    """The site's job process checks the job id it is handed too."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "flctl.node.site.job_process", str(tmp_path), str(tmp_path), "../x"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and "job id" in out.stderr
