"""End to end with real processes: a server and two sites from `flctl node start`, jobs driven by `flctl job`."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.config.kit import load_kit
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

from .conftest import ROOT
from .federation import FLCTL, Federation, make_federation, pid_alive, running

JOBS = ROOT / "playbooks" / "jobs"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = make_federation(tmp_path_factory.mktemp("fed"))
    # The sites receive with other flow-control windows than the server's default: a quarter of a chunk, and
    # gRPC's adaptive one (so every job here, the 24 MiB model's too, runs with both).
    for site, window in (("site-1", "0.25"), ("site-2", "0")):
        resources = federation.kit(site) / "local" / "resources.yml"
        text, count = re.subn(r"(?m)^stream_window_mb: .*$", f"stream_window_mb: {window}", resources.read_text())
        assert count == 1, "the kit's resources.yml should name the window"
        resources.write_text(text)
    with running(federation) as federation:
        yield federation


def load_train_module(job: str):
    spec = importlib.util.spec_from_file_location(f"{job}_train", JOBS / job / "app" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def submit(fed: Federation, job: Path) -> str:
    out = fed.flctl("job", "submit", job, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["id"])


def wait_status(fed: Federation, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = fed.flctl_json("job", "show", job_id)
        if job["status"] in ("FINISHED", "FAILED", "ABORTED"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end; logs: {fed.logs()}")


def test_sites_are_listed_online(fed):
    """`flctl site ls --json` shows both sites online with their org."""
    sites = fed.flctl_json("site", "ls")
    assert [(s["name"], s["org"], s["online"]) for s in sites] == [("site-1", "org_1", True), ("site-2", "org_2", True)]


def test_hello_numpy_gives_the_exact_weighted_average(fed, tmp_path):
    """submit --watch runs to FINISHED; the downloaded model is the weighted average the test computes itself."""
    out = fed.flctl("job", "submit", JOBS / "hello-numpy", "--watch", "--json")
    assert out.returncode == 0, out.stderr + fed.logs()
    result = json.loads(out.stdout)
    assert result["status"] == "FINISHED"
    job_id = result["id"]
    got = fed.flctl_json("job", "download", job_id, "-o", tmp_path)
    final = load_file(Path(got["path"]) / "models" / "final.safetensors")

    train = load_train_module("hello-numpy")
    model: dict[str, np.ndarray] = {}
    for _round in range(3):
        answers = [train.train_round(model, site) for site in fed.sites]
        total = sum(n for _, _, n in answers)
        model = {name: (sum(p[name].astype(np.float64) * n for p, _, n in answers) / total).astype(np.float32)
                 for name in answers[0][0]}
    assert sorted(final) == sorted(model)
    for name in model:
        np.testing.assert_allclose(final[name], model[name], rtol=1e-6, atol=1e-7)

    job = fed.flctl_json("job", "show", job_id)
    assert (job["status"], job["rounds"], job["rounds_done"]) == ("FINISHED", 3, 3)
    assert {s["name"] for s in job["sites"]} == {"site-1", "site-2"}
    assert set(job["last_metrics"]) == {"site-1", "site-2"}
    assert sorted(p.name for p in (Path(got["path"]) / "models").iterdir()) == [
        "final.safetensors", "round-0.safetensors", "round-1.safetensors", "round-2.safetensors"]
    listed = fed.flctl_json("job", "ls")
    assert any(j["id"] == job_id and j["status"] == "FINISHED" for j in listed)


def test_hello_pt_loss_falls(fed, tmp_path):
    """hello-pt (a PyTorch CNN on synthetic data) finishes and each site's loss falls across rounds."""
    job_id = submit(fed, JOBS / "hello-pt")
    job = wait_status(fed, job_id, timeout=180)
    assert job["status"] == "FINISHED", job["error"] + fed.flctl("job", "logs", job_id).stdout
    got = fed.flctl_json("job", "download", job_id, "-o", tmp_path)
    metrics = json.loads((Path(got["path"]) / "metrics.json").read_text())
    for site in fed.sites:
        losses = [m["value"] for m in metrics if m["site"] == site and m["name"] == "loss" and m["step"] is None]
        assert len(losses) == 5
        assert losses[-1] < losses[0], losses


SLEEPER = """\
import os, subprocess, time
import flctl.client as fl
fl.init()
child = subprocess.Popen(["sleep", "600"])
print(f"PIDS {os.getpid()} {child.pid}", flush=True)
while fl.running():
    fl.receive()
    time.sleep(600)
"""

JOB_YML = """\
api_version: 1
name: {name}
workflow: {{type: fedavg, args: {{rounds: 2, round_timeout_s: 600}}}}
sites: all
min_sites: 2
"""


def make_job(root: Path, name: str, script: str) -> Path:
    (root / name / "app").mkdir(parents=True)
    (root / name / "job.yml").write_text(JOB_YML.format(name=name))
    (root / name / "app" / "train.py").write_text(script)
    return root / name


def test_abort_kills_every_training_process(fed, tmp_path):
    """Abort stops the job and every site's training script and the processes it started, within seconds."""
    job_id = submit(fed, make_job(tmp_path, "sleeper", SLEEPER))
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(pids) < 4:
        logs = fed.flctl("job", "logs", job_id).stdout
        pids = {int(p) for pair in re.findall(r"PIDS (\d+) (\d+)", logs) for p in pair}
        time.sleep(0.3)
    assert len(pids) == 4, fed.logs()
    assert all(pid_alive(p) for p in pids)
    aborted = fed.flctl_json("job", "abort", job_id)
    assert aborted["status"] == "ABORTED"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if pid_alive(p)]
    time.sleep(1)  # the sites' last reports, if any, come in
    shown = fed.flctl_json("job", "show", job_id)
    assert {site["state"] for site in shown["sites"]} == {"aborted"}, shown["sites"]


def test_a_raising_script_fails_the_job_and_logs_show_the_traceback(fed, tmp_path):
    script = "import flctl.client as fl\nfl.init()\nwhile fl.running():\n    fl.receive()\n" \
             "    raise ValueError('boom at ' + fl.site_name())\n"
    job_id = submit(fed, make_job(tmp_path, "raiser", script))
    job = wait_status(fed, job_id)
    assert job["status"] == "FAILED"
    assert "boom at" in job["error"]
    logs = fed.flctl("job", "logs", job_id, "--site", "site-1")
    assert logs.returncode == 0
    assert "Traceback" in logs.stdout and "ValueError: boom at site-1" in logs.stdout
    assert fed.flctl("job", "submit", JOBS / "hello-numpy").returncode == 0, "the daemons survived"


def test_bad_job_folder_is_refused_at_submit(fed, tmp_path):
    before = len(fed.flctl_json("job", "ls"))
    (tmp_path / "empty").mkdir()
    out = fed.flctl("job", "submit", tmp_path / "empty")
    assert out.returncode == 2
    assert "no job.yml" in out.stderr and "Traceback" not in out.stderr
    bad = make_job(tmp_path, "badwf", "print('x')\n")
    (bad / "job.yml").write_text(JOB_YML.format(name="badwf").replace("fedavg", "fedmagic"))
    out = fed.flctl("job", "submit", bad)
    assert out.returncode == 2 and "job.yml:3: workflow.type" in out.stderr
    assert len(fed.flctl_json("job", "ls")) == before


def test_unknown_job_is_exit_1(fed):
    out = fed.flctl("job", "show", "nosuchjob")
    assert out.returncode == 1 and "no job nosuchjob" in out.stderr


def _stub(kit_dir: Path, service: str, ca: bytes | None = None, with_cert: bool = True):
    kit = load_kit(kit_dir, verify=False)
    creds = grpc.ssl_channel_credentials(root_certificates=ca or kit.ca_pem,
                                         private_key=kit.key_pem if with_cert else None,
                                         certificate_chain=kit.cert_pem if with_cert else None)
    channel = grpc.secure_channel(kit.target, creds)
    return channel, (pb_grpc.AdminStub if service == "admin" else pb_grpc.FederationStub)(channel)


def test_client_without_certificate_is_refused(fed):
    channel, stub = _stub(fed.admin_kit, "admin", with_cert=False)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.WhoAmI(pb.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_projects_ca_is_refused(fed, tmp_path):
    other = make_federation(tmp_path, sites=1, name="intruder")
    kit = load_kit(other.admin_kit, verify=False)
    creds = grpc.ssl_channel_credentials(root_certificates=load_kit(fed.admin_kit, verify=False).ca_pem,
                                         private_key=kit.key_pem, certificate_chain=kit.cert_pem)
    with grpc.secure_channel(f"localhost:{fed.port}", creds) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.AdminStub(channel).WhoAmI(pb.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_site_certificate_on_admin_service_is_refused(fed):
    channel, stub = _stub(fed.kit("site-1"), "admin")
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.ListJobs(pb.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_admin_certificate_on_federation_service_is_refused(fed):
    channel, stub = _stub(fed.admin_kit, "federation")
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.Register(pb.RegisterRequest(version="1"), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_whoami_comes_from_the_certificate(fed):
    channel, stub = _stub(fed.admin_kit, "admin")
    with channel:
        me = stub.WhoAmI(pb.Empty(), timeout=10)
    assert (me.name, me.org, me.role, me.project) == ("admin@hub.org", "hub", "project_admin", "fedtest")


def test_node_start_refuses_a_tampered_kit(fed, tmp_path):
    import shutil

    kit = tmp_path / "site-2"
    shutil.copytree(fed.kit("site-2"), kit)
    (kit / "startup" / "node.yml").write_text((kit / "startup" / "node.yml").read_text() + "# edited\n")
    out = subprocess.run([FLCTL, "node", "start", kit], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert "startup/node.yml was changed" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("node", "setting", "expected"), [
    ("site-2", "stream_window_mb: lots", "stream_window_mb must be a size in MiB from 0.0625 to 1024"),
    ("localhost", "max_concurrent_jobs: 0", "max_concurrent_jobs must be a whole number of jobs, 1 or more"),
    ("site-2", "gpus: [0, 0]", "gpus must be auto (every GPU nvidia-smi finds), a list of distinct GPU indices"),
])
def test_node_start_refuses_a_setting_it_does_not_allow(fed, tmp_path, node, setting, expected):
    """A bad value in a node's own local/resources.yml: exit code 2, the file, the key and what is allowed, before
    the node starts (a site's flow-control window; the server's job limit)."""
    import shutil

    kit = tmp_path / node
    shutil.copytree(fed.kit(node), kit)
    (kit / "local" / "resources.yml").write_text(f"api_version: 1\n{setting}\n")
    out = subprocess.run([FLCTL, "node", "start", kit], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2, out.stderr
    assert f"resources.yml: {expected}" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_job_waits_for_its_named_sites_and_says_why(fed, tmp_path):
    """A job naming an absent site stays SUBMITTED with the reason; aborting it ends it."""
    job = make_job(tmp_path, "waits", "print('never runs')\n")
    (job / "job.yml").write_text(JOB_YML.format(name="waits").replace("sites: all", "sites: [site-1, site-9]"))
    job_id = submit(fed, job)
    deadline = time.monotonic() + 20
    shown = fed.flctl_json("job", "show", job_id)
    while time.monotonic() < deadline and not shown["wait_reason"]:
        time.sleep(0.2)
        shown = fed.flctl_json("job", "show", job_id)
    assert shown["status"] == "SUBMITTED"
    assert shown["wait_reason"] == "waiting for site-9 to come online"
    assert fed.flctl_json("job", "abort", job_id)["status"] == "ABORTED"


def test_logs_follow_streams_until_the_job_ends(fed):
    """`job logs --follow` prints lines as they come and returns once the job has ended."""
    job_id = submit(fed, JOBS / "hello-numpy")
    out = fed.flctl("job", "logs", job_id, "--follow", timeout=60)
    assert out.returncode == 0
    assert "[server]" in out.stdout and "round 2" in out.stdout
    assert wait_status(fed, job_id)["status"] == "FINISHED"


def test_two_jobs_run_at_once(fed, tmp_path):
    """With two free slots (the default), two jobs are RUNNING at the same time."""
    first = submit(fed, make_job(tmp_path / "a", "sleeper-a", SLEEPER))
    second = submit(fed, make_job(tmp_path / "b", "sleeper-b", SLEEPER))
    deadline = time.monotonic() + 30
    statuses: list[str] = []
    while time.monotonic() < deadline:
        statuses = [fed.flctl_json("job", "show", j)["status"] for j in (first, second)]
        if statuses == ["RUNNING", "RUNNING"]:
            break
        time.sleep(0.3)
    assert statuses == ["RUNNING", "RUNNING"]
    for job_id in (first, second):
        assert fed.flctl_json("job", "abort", job_id)["status"] == "ABORTED"


BIG_MODEL = """\
import numpy as np
import flctl.client as fl

fl.init()
site = fl.site_name()
while fl.running():
    model = fl.receive()
    params = model.params or {"w": np.zeros(6 * 1024 * 1024, np.float32), "b": np.zeros((3, 5), np.float64),
                              "steps": np.zeros(2, np.int64)}
    bump = 1.0 if site == "site-1" else 3.0
    for value in params.values():
        value += np.asarray(bump).astype(value.dtype)  # in place, into the arrays the model arrived in
    fl.send(fl.Model(params=params, num_examples=1 if site == "site-1" else 3))
"""


def test_a_model_of_many_messages_is_averaged_exactly(fed, tmp_path):
    """A 24 MiB model (three 8 MiB messages' worth, split in 1 MiB chunks), of three dtypes, goes to both
    sites and back through the scripts' arrays for two rounds, and the server's float32 running sum gives
    the exact weighted average (the bumps are exact in every dtype)."""
    job = make_job(tmp_path, "bigmodel", BIG_MODEL)
    job_id = submit(fed, job)
    done = wait_status(fed, job_id, timeout=120)
    assert done["status"] == "FINISHED", done["error"] + fed.flctl("job", "logs", job_id).stdout
    got = fed.flctl_json("job", "download", job_id, "-o", tmp_path / "out")
    final = load_file(Path(got["path"]) / "models" / "final.safetensors")
    # each round: (1 * (x + 1) + 3 * (x + 3)) / 4 = x + 2.5; two rounds from zero
    assert final["w"].dtype == np.float32 and final["w"].shape == (6 * 1024 * 1024,)
    assert np.all(final["w"] == 5.0)
    assert final["b"].dtype == np.float64 and np.all(final["b"] == 5.0)
    # integers are rounded half to even each round: 2.5 -> 2, then (3 + 3 * 5) / 4 = 4.5 -> 4
    assert final["steps"].dtype == np.int64 and final["steps"].tolist() == [4, 4]
