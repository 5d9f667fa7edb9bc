"""Corrupt state on a real federation: a damaged audit tail is set aside and the federation goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path

from flctl.node.admin.admin_client import AdminClient
from flctl.node.config.kit import load_kit
from flctl.node.security.audit import AuditLog, read

from .federation import Federation, make_federation, running
from .job_folders import job_folder

ADMINS = [("pa@a.org", "a", "project_admin"), ("member@a.org", "a", "member")]



def run_to_end(fed: Federation, job: Path) -> str:
    with AdminClient.from_kit(fed.kit("pa@a.org")) as admin:
        job_id = admin.submit_job(job)
        for _event in admin.watch(job_id):
            pass
        return admin.get_job(job_id).status


def damage_last_line(path: Path, syntax: bool) -> None:
    """One changed byte in the last record, as a torn write would leave it: its closing brace (the line is no
    longer JSON) or a digit of its hash (still JSON, but the record no longer matches its hash)."""
    data = bytearray(path.read_bytes())
    body = data.rstrip(b"\n")
    at = len(body) - 1 if syntax else body.rfind(b'"hash":"') + len('"hash":"') + 3
    data[at] = ord("x") if syntax else (ord("0") if data[at] != ord("0") else ord("1"))
    path.write_bytes(bytes(data))


def verify_json(fed: Federation, log: Path, kit: Path) -> dict:
    out = fed.flctl("audit", "verify", log, "--kit", kit, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_a_damaged_audit_tail_is_set_aside_and_the_federation_goes_on(tmp_path):
    """Server log damaged while running, site log damaged before start: refusals keep exit 4, jobs still run."""
    fed = make_federation(tmp_path, sites=1, name="torn", admins=ADMINS)
    site_log = fed.kit("site-1") / "workspace" / "audit.jsonl"
    before = AuditLog(site_log, key_pem=load_kit(fed.kit("site-1")).key_pem)
    for n in range(3):
        before.append("site-1", "test.record", n=n)
    damage_last_line(site_log, syntax=False)
    with running(fed):
        assert run_to_end(fed, job_folder(tmp_path, "first", rounds=2)) == "FINISHED"
        job_id = fed.flctl_json("job", "ls")[0]["id"]
        server_log = fed.kit("localhost") / "workspace" / "audit.jsonl"
        damage_last_line(server_log, syntax=True)

        refused = fed.flctl("job", "abort", job_id, "--kit", fed.kit("member@a.org"))
        assert refused.returncode == 4, refused.stderr
        assert "not permitted" in refused.stderr
        # the scheduler still starts jobs
        assert run_to_end(fed, job_folder(tmp_path, "second", rounds=2)) == "FINISHED"
        assert run_to_end(fed, job_folder(tmp_path, "third", rounds=2)) == "FINISHED"

        server = verify_json(fed, server_log, fed.kit("localhost"))
        assert server["ok"] and server["signatures"] == "checked"
        [gap] = server["gaps"]
        assert gap["detected"] == "on append" and (server_log.parent / gap["set_aside"]).is_file()
        assert any(r["action"] == "job.abort" and r["result"].startswith("refused") for r in read(server_log))
        site = verify_json(fed, site_log, fed.kit("site-1"))
        assert site["ok"] and site["gaps"][0]["detected"] == "at start" and site["gaps"][0]["after_seq"] == 2
        with AdminClient.from_kit(fed.admin_kit) as admin:  # the console's top line and `i` show these
            [notice] = admin.whoami().notices
        assert gap["set_aside"] in notice and "flctl audit verify" in notice
        node_log = (fed.root / "localhost.log").read_text()
        assert "had a damaged tail" in node_log and "Traceback" not in node_log
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "had a damaged tail" not in (fed.root / "site-1.log").read_text():
            time.sleep(0.2)
        assert "had a damaged tail" in (fed.root / "site-1.log").read_text()


WAITING = """\
api_version: 1
name: waiting
workflow: {type: fedavg, args: {rounds: 1, round_timeout_s: 30}}
sites: [site-9]
min_sites: 1
"""


def test_a_damaged_database_stops_the_server_with_exit_2_and_node_recover_rebuilds_the_jobs(tmp_path):
    """A damaged server.db header: `node start` exits 2 naming the file; `node recover` brings the jobs back."""
    fed = make_federation(tmp_path, sites=1, name="rebuilt", admins=ADMINS)
    server_kit = fed.kit("localhost")
    workspace = server_kit / "workspace"
    with running(fed):
        finished = fed.flctl_json("job", "submit", job_folder(tmp_path, "finished", rounds=2), "--watch")["id"]
        waiting_dir = job_folder(tmp_path, "waiting", rounds=2)
        (waiting_dir / "job.yml").write_text(WAITING)
        waiting = fed.flctl_json("job", "submit", waiting_dir)["id"]
    (workspace / "jobs" / finished / "record.json").unlink()  # a job from before record files: rebuilt from disk
    (workspace / "jobs" / "stray").mkdir()
    db = workspace / "server.db"
    with open(db, "r+b") as handle:
        handle.write(b"this is no db\x00\x00\x00")

    start = fed.flctl("node", "start", server_kit, timeout=60)
    assert start.returncode == 2, start.stderr
    assert str(db) in start.stderr and "flctl node recover" in start.stderr
    assert "Traceback" not in start.stdout + start.stderr

    out = fed.flctl("node", "recover", server_kit, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["damaged"] and Path(report["moved_aside"][0]).name.startswith("server.db.damaged-")
    assert Path(report["moved_aside"][0]).is_file()
    assert {(j["id"], j["status"], j["from"]) for j in report["recovered"]} == {
        (finished, "FINISHED", "bundle"), (waiting, "SUBMITTED", "record.json")}
    assert report["not_recovered"] == [{"folder": "stray", "reason": "no bundle.zip: this is not a job the server "
                                                                     "accepted"}]
    assert any("events" in lost for lost in report["lost"])

    with running(fed):
        jobs = {j["id"]: j for j in fed.flctl_json("job", "ls")}
        assert jobs[finished]["status"] == "FINISHED" and jobs[waiting]["status"] == "SUBMITTED"
        assert jobs[finished]["submitter"] == "pa@a.org"
        metrics = fed.flctl_json("job", "show", finished)
        assert metrics["status"] == "FINISHED"
    again = fed.flctl("node", "recover", server_kit, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["damaged"] is False
