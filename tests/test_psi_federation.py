"""The `psi` workflow on a real local mTLS federation: three sites' scripts run `fl.psi`, each writes the exact
intersection, the site keeps it for a follow-on job (`psi_job`), the server's workspace holds no ID, and a site
sending malformed PSI messages fails alone while the other two get theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("private_set_intersection.python", reason="needs the privacy extra: bash scripts/setup.sh --all")

from flctl.node.admin.admin_client import AdminClient
from flctl.node.jobs.job_status import JobStatus, SiteState

from .federation import Federation, make_federation, running

SETS = {
    "site-1": [f"ZQX{i:05d}" for i in range(0, 400)] + ["ZQX00007", "ZQX00008"],
    "site-2": [f"ZQX{i:05d}" for i in range(100, 500)],
    "site-3": [f"ZQX{i:05d}" for i in range(0, 600, 3)],
}
"""IDs of a form found nowhere else, so that grepping the server's workspace for them means something."""
WANT = sorted(set(SETS["site-1"]) & set(SETS["site-2"]) & set(SETS["site-3"]))

PSI_SCRIPT = f"""
import flctl.client as fl
SETS = {json.dumps(SETS)}
fl.init()
fl.psi(lambda: SETS[fl.site_name()])
"""

MALFORMED_AT_SITE_3 = PSI_SCRIPT.replace("fl.psi(", """
import numpy as np
if fl.site_name() == "site-3":
    while fl.running():
        task = fl.receive()
        if task.task == "psi_items":
            fl.send(fl.Model(meta={"count": 200, "id_type": "str"}))
        elif task.task == "psi_request":
            fl.send(fl.Model(params={"psi_request": np.frombuffer(b"not a PSI request", np.uint8)},
                             meta={"size": 200}))
        elif task.task == "psi_done":
            raise SystemExit("site-3 was told: " + task.meta.get("failed", "nothing"))
        else:
            fl.send(fl.Model())
fl.psi(""", 1)

FOLLOW_ON = """
from pathlib import Path
import flctl.client as fl
fl.init()
rows = (Path.home() / "psi" / "intersection.txt").read_text().splitlines()
while fl.running():
    fl.receive()
    fl.send(fl.Model(params={}, metrics={"rows": len(rows)}, num_examples=len(rows)))
"""


def job(root: Path, name: str, workflow: str, script: str, extra: str = "") -> Path:
    folder = root / name
    (folder / "app").mkdir(parents=True)
    (folder / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {workflow}\nmin_sites: 2\n"
                                    f"app: {{command: [python, main.py]}}\n{extra}")
    (folder / "app" / "main.py").write_text(script)
    return folder


def kept(fed: Federation, site: str, name: str) -> Path:
    return fed.kit(site) / "workspace" / "psi" / name / "intersection.txt"


def wait_kept(fed: Federation, name: str, sites: list[str]) -> None:
    """The daemon keeps a psi job's result once the job's process has exited (just after FINISHED)."""
    import time

    deadline = time.monotonic() + 20
    while not all(kept(fed, site, name).is_file() for site in sites) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_psi_on_a_federation_then_a_job_that_reads_the_intersection(tmp_path: Path):
    """Three sites find exactly their common IDs; each keeps them; a follow-on job reads them; the server's
    workspace (store, logs, reports) holds sizes and no ID; a malformed sender fails alone."""
    # Prepare
    with running(make_federation(tmp_path, sites=3)) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        # Execute
        psi_id = admin.submit_job(job(tmp_path, "shared-ids", "{type: psi}", PSI_SCRIPT))
        list(admin.watch(psi_id))
        psi_info = admin.get_job(psi_id)
        wait_kept(fed, "shared-ids", fed.sites)
        follow_id = admin.submit_job(job(tmp_path, "vertical", "{type: fedavg, args: {rounds: 1}}", FOLLOW_ON,
                                         "sites: [site-1, site-2]\npsi_job: shared-ids\n"))
        list(admin.watch(follow_id))
        follow = admin.get_job(follow_id)
        bad_id = admin.submit_job(job(tmp_path, "with-a-liar", "{type: psi}", MALFORMED_AT_SITE_3))
        list(admin.watch(bad_id))
        bad = admin.get_job(bad_id)
        missing_id = admin.submit_job(job(tmp_path, "no-psi-yet", "{type: fedavg, args: {rounds: 1}}", FOLLOW_ON,
                                          "sites: [site-1, site-2]\npsi_job: never-ran\n"))
        list(admin.watch(missing_id))
        missing = admin.get_job(missing_id)
        wait_kept(fed, "with-a-liar", ["site-1", "site-2"])
    # Assert
    assert psi_info.status == JobStatus.FINISHED, psi_info.error + fed.logs()
    assert len(WANT) == 100
    for site in fed.sites:
        workspace = fed.kit(site) / "workspace" / "jobs" / psi_id / "job" / "psi" / "intersection.txt"
        assert workspace.read_text().splitlines() == WANT
        assert kept(fed, site, "shared-ids").read_text().splitlines() == WANT
    assert psi_info.reports["psi"]["intersection_size"] == 100
    assert psi_info.reports["psi"]["set_sizes"] == {"site-1": 400, "site-2": 400, "site-3": 200}
    assert follow.status == JobStatus.FINISHED, follow.error
    assert follow.last_metrics["site-1"]["rows"] == 100.0 and follow.last_metrics["site-2"]["rows"] == 100.0
    server = fed.kit("localhost") / "workspace"
    every = {item.encode() for ids in SETS.values() for item in ids}
    files = {path: path.read_bytes() for path in server.rglob("*") if path.is_file()}
    found = [path for path, data in files.items() if any(item in data for item in every)]
    assert found == [], found
    assert (server / "jobs").is_dir()

    assert bad.status == JobStatus.FINISHED, bad.error
    assert bad.reports["psi"]["sites"] == ["site-1", "site-2"]
    assert "site-2 could not use its message: the PSI request could not be used" in \
        bad.reports["psi"]["dropped"]["site-3"]
    states = {site.name: site for site in bad.sites}
    assert states["site-3"].state == SiteState.FAILED and "site-3 was told" in states["site-3"].error
    want_two = sorted(set(SETS["site-1"]) & set(SETS["site-2"]))
    for site in ("site-1", "site-2"):
        assert kept(fed, site, "with-a-liar").read_text().splitlines() == want_two
    assert not kept(fed, "site-3", "with-a-liar").exists()

    assert missing.status != JobStatus.FINISHED
    assert "no intersection from a psi job named 'never-ran'" in missing.error + str(missing.sites)
