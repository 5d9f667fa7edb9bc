"""GPUs at sites, end to end (issue 30): one real federation whose sites see a fake nvidia-smi with two GPUs.
site-1 offers both, one job each; site-2 offers GPU 0, shared. Jobs whose scripts report the CUDA_VISIBLE_DEVICES
and cores they saw show the assignment, the sharing, the queueing and the refusal, as `flctl` shows them."""

from __future__ import annotations

import json
from pathlib import Path

from flctl.node.admin.admin_client import AdminClient
from flctl.node.admin.admin_types import JobInfo

from .federation import make_federation
from .gpu_fakes import fake_nvidia_smi, path_with

REPORT = """import os
import time

import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    time.sleep({hold})
    seen = [int(i) for i in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if i]
    metrics = {{f"gpu{{i}}": 1.0 for i in seen}}
    metrics.update(gpus=float(len(seen)), cores=float(len(os.sched_getaffinity(0))))
    fl.send(fl.Model(params=model.params, metrics=metrics, num_examples=1))
"""


def _job(root: Path, name: str, sites: list[str], resources: str, hold: float) -> Path:
    folder = root / name
    (folder / "app").mkdir(parents=True)
    (folder / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 1, "
                                    f"round_timeout_s: 60}}}}\nsites: [{', '.join(sites)}]\nmin_sites: "
                                    f"{len(sites)}\nresources: {resources}\n")
    (folder / "app" / "train.py").write_text(REPORT.format(hold=hold))
    return folder


def _set_resources(kit: Path, text: str) -> None:
    path = kit / "local" / "resources.yml"
    path.write_text(path.read_text().replace("gpus: []\n", text))


def _run_to_end(admin: AdminClient, job_id: str) -> tuple[JobInfo, list[str]]:
    """Follow the job's events to its end; its final info and why it waited, if it did."""
    waited = [e.message for e in admin.watch(job_id) if e.kind == "waiting"]
    return admin.get_job(job_id), waited


def _gpus_seen(info: JobInfo, site: str) -> set[int]:
    return {int(name[3:]) for name, value in info.last_metrics[site].items() if name[3:].isdigit() and value}


def test_sites_give_jobs_their_gpus_queue_what_waits_and_refuse_what_never_fits(tmp_path: Path):
    """Two concurrent 1-GPU jobs get GPUs 0 and 1 at site-1 and share GPU 0 at site-2; a 2-GPU job waits until
    both end; a job asking 64 CPUs and about 95 TiB fails, saying why in `flctl job show`; site ls shows the GPUs."""
    # Prepare
    fed = make_federation(tmp_path, sites=2)
    gpu_bin = fake_nvidia_smi(tmp_path / "gpu-bin")
    _set_resources(fed.kit("site-1"), "gpus: auto\n")
    _set_resources(fed.kit("site-2"), "gpus: [0]\ngpu_sharing: true\n")
    server = fed.kit("localhost") / "local" / "resources.yml"
    server.write_text(server.read_text().replace("max_concurrent_jobs: 2", "max_concurrent_jobs: 4"))
    one = "{cpus: 1, gpus: 1, gpu_memory_gb: 10}"
    both = ["site-1", "site-2"]
    jobs = [_job(tmp_path, "one-a", both, one, 2), _job(tmp_path, "one-b", both, one, 2),
            _job(tmp_path, "two", ["site-1"], "{gpus: 2}", 0),
            _job(tmp_path, "huge", ["site-1"], "{cpus: 64, memory_mb: 100000000}", 0)]
    try:
        fed.start("localhost")
        for site in fed.sites:
            fed.start(site, env={"PATH": path_with(gpu_bin)})
        fed.wait_online(fed.sites)
        listed = {s["name"]: s for s in fed.flctl_json("site", "ls")}
        table = fed.flctl("site", "ls").stdout
        with AdminClient.from_kit(fed.admin_kit) as admin:
            # Execute
            a, b, two = (admin.submit_job(job) for job in jobs[:3])
            (first, _), (second, _), (after, waited) = (_run_to_end(admin, j) for j in (a, b, two))
        watched = fed.flctl("job", "submit", jobs[3], "--watch", "--json")
        huge = json.loads(watched.stdout)["id"]
        shown = fed.flctl("job", "show", huge, "--json")
    finally:
        fed.stop_all()
    # Assert
    gpus = listed["site-1"]["resources"]["gpus"]
    assert [(g["index"], g["name"], g["memory_mb"]) for g in gpus] == [(0, "NVIDIA A100-SXM4-40GB", 40960),
                                                                       (1, "NVIDIA A100-SXM4-40GB", 40960)]
    assert [g["index"] for g in listed["site-2"]["resources"]["gpus"]] == [0]
    assert "0/2 used, 78 GiB free" in table  # the fake's free memory: 40326 + 39302 MiB
    assert [j.status for j in (first, second, after)] == ["FINISHED"] * 3, (first, second, after)
    assert _gpus_seen(first, "site-1") | _gpus_seen(second, "site-1") == {0, 1}  # one each
    assert _gpus_seen(first, "site-2") == _gpus_seen(second, "site-2") == {0}  # shared
    assert first.last_metrics["site-1"]["cores"] == 1.0
    assert first.started_at < second.ended_at and second.started_at < first.ended_at  # at the same time
    assert any("2 free GPUs" in w and "at site-1" in w for w in waited), waited
    assert after.started_at >= max(first.ended_at, second.ended_at)
    assert _gpus_seen(after, "site-1") == {0, 1}
    assert watched.returncode == 1  # DESIGN.md: the operation ran and the job failed
    refused = json.loads(shown.stdout)
    assert shown.returncode == 0 and refused["status"] == "FAILED"
    assert refused["error"] == ("the job cannot run: site-1 can never run it: the job asks 64 CPUs; this site offers "
                                + str(listed["site-1"]["resources"]["cpus"]))
