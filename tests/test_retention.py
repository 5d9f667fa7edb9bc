"""Ended jobs are removed: by `flctl job rm` (rights, a running job refused, audited) and by `retention_days` on the
server (folders and records) and at each site (job workspaces)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flctl.node.config.resources import load_resources
from flctl.provisioner.errors import KitError

from .federation import ADMIN, Federation, make_federation, running

JOBS = Path(__file__).resolve().parent.parent / "playbooks" / "jobs"
MEMBER = ("member@hub.org", "hub", "member")
WAITING = """\
api_version: 1
name: waits
workflow: {type: fedavg, args: {rounds: 1, round_timeout_s: 30}}
sites: [site-9]
min_sites: 1
"""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running(make_federation(tmp_path_factory.mktemp("ret"), sites=2, admins=[ADMIN, MEMBER])) as fed:
        yield fed


def finished_job(fed: Federation) -> str:
    out = fed.flctl("job", "submit", JOBS / "hello-numpy", "--watch", "--json")
    assert out.returncode == 0, out.stderr + fed.logs()
    return str(json.loads(out.stdout)["id"])


def audit(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.2)


def test_job_rm_removes_an_ended_job_and_refuses_a_running_one(fed, tmp_path):
    """`job rm` needs the rights (member: exit 4), refuses a waiting job (exit 1), removes a finished one."""
    job_id = finished_job(fed)
    folder = fed.kit("localhost") / "workspace" / "jobs" / job_id
    assert folder.is_dir()
    out = fed.flctl("job", "rm", job_id, "--kit", fed.kit(MEMBER[0]))
    assert out.returncode == 4 and "not permitted" in out.stderr

    (tmp_path / "waits" / "app").mkdir(parents=True)
    (tmp_path / "waits" / "job.yml").write_text(WAITING)
    (tmp_path / "waits" / "app" / "train.py").write_text("import flctl.client as fl\nfl.init()\n")
    waiting = fed.flctl_json("job", "submit", tmp_path / "waits")["id"]
    out = fed.flctl("job", "rm", waiting)
    assert out.returncode == 1 and "abort it first" in out.stderr and "Traceback" not in out.stderr
    fed.flctl("job", "abort", waiting)

    assert fed.flctl_json("job", "rm", job_id) == {"id": job_id, "removed": True}
    assert not folder.exists()
    assert fed.flctl("job", "show", job_id).returncode != 0
    assert job_id not in {j["id"] for j in fed.flctl_json("job", "ls")}
    records = audit(fed.kit("localhost") / "workspace" / "audit.jsonl")
    assert any(r["action"] == "job.rm" and r["result"] == "ok" and r["args"] == {"job_id": job_id} for r in records)


def test_retention_days_removes_ended_jobs_at_the_server_and_the_site(fed):
    """With retention_days set, a restarted server removes an ended job's folder and records, and a restarted site
    its workspace; both audit it."""
    job_id = finished_job(fed)
    server_ws, site_ws = fed.kit("localhost") / "workspace", fed.kit("site-1") / "workspace"
    assert (server_ws / "jobs" / job_id).is_dir() and (site_ws / "jobs" / job_id).is_dir()
    fed.stop_all()
    for name in ("localhost", "site-1", "site-2"):
        with open(fed.kit(name) / "local" / "resources.yml", "a") as out:
            out.write("\nretention_days: 0.000001\n")  # about 0.09 s
    time.sleep(0.2)  # the job must be older than the retention, which is all this waits for
    for name in ("localhost", "site-1", "site-2"):
        fed.start(name)
    fed.wait_online(["site-1", "site-2"])
    wait_until(lambda: not (server_ws / "jobs" / job_id).exists(), "the server kept the job's folder")
    wait_until(lambda: not (site_ws / "jobs" / job_id).exists(), "the site kept the job's workspace")
    assert job_id not in {j["id"] for j in fed.flctl_json("job", "ls")}
    assert any(r["action"] == "job.expire" and r.get("job_id") == job_id for r in audit(server_ws / "audit.jsonl"))
    assert any(r["action"] == "job.expire" and r.get("job_id") == job_id for r in audit(site_ws / "audit.jsonl"))


def test_a_bad_retention_days_is_refused(tmp_path):
    """retention_days must be a number of days, 0 or more: anything else names the key (exit 2 at start)."""
    path = tmp_path / "resources.yml"
    path.write_text("retention_days: -1\n")
    with pytest.raises(KitError, match="retention_days"):
        load_resources(path)
    path.write_text("retention_days: 30\n")
    assert load_resources(path).retention_days == 30


def test_submit_signs_the_job_id_and_the_valid_days_window(fed, tmp_path):
    """`job submit --valid-days 0.5` signs a half-day window; the server keeps the claims under the signed job id."""
    (tmp_path / "waits" / "app").mkdir(parents=True)
    (tmp_path / "waits" / "job.yml").write_text(WAITING)
    (tmp_path / "waits" / "app" / "train.py").write_text("import flctl.client as fl\nfl.init()\n")
    job_id = fed.flctl_json("job", "submit", tmp_path / "waits", "--valid-days", "0.5")["id"]
    try:
        signed = json.loads((fed.kit("localhost") / "workspace" / "jobs" / job_id / "signature.json").read_text())
        claims = json.loads(signed["claims_json"])
        assert claims["job_id"] == job_id and claims["name"] == "waits" and claims["sites"] == ["site-9"]
        assert claims["not_after"] - claims["not_before"] == pytest.approx(43200)
    finally:
        fed.flctl("job", "abort", job_id)


def test_the_server_refuses_a_bad_or_taken_client_chosen_job_id(fed, tmp_path, monkeypatch):
    """The job id the client signs must be a plain folder name and new: `../evil` is INVALID_ARGUMENT, a taken id
    ALREADY_EXISTS, and nothing is stored for either."""
    import flctl.node.jobs.job_signing as signing
    from flctl.node import errors
    from flctl.node.admin.admin_client import AdminClient

    (tmp_path / "waits" / "app").mkdir(parents=True)
    (tmp_path / "waits" / "job.yml").write_text(WAITING)
    (tmp_path / "waits" / "app" / "train.py").write_text("import flctl.client as fl\nfl.init()\n")
    jobs = fed.kit("localhost") / "workspace" / "jobs"
    with AdminClient.from_kit(fed.admin_kit) as admin:
        taken = admin.submit_job(tmp_path / "waits")
        admin.abort_job(taken)
        monkeypatch.setattr(signing, "new_job_id", lambda: "../evil")
        with pytest.raises(errors.BadRequest, match="job id"):
            admin.submit_job(tmp_path / "waits")
        assert not (jobs.parent / "evil").exists()
        monkeypatch.setattr(signing, "new_job_id", lambda: taken)
        with pytest.raises(errors.NodeError, match="exists already"):
            admin.submit_job(tmp_path / "waits")
        assert admin.get_job(taken).status == "ABORTED"
