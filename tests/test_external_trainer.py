"""External trainers (job.yml `app: {external: true}`, NVIDIA FLARE's agent): a process the test starts itself, not
flctl, attaches to a site's job process with `flctl.client.attach(...)` and trains; the bridge's attach file and
token are the site user's only, a wrong token is refused and the right one still attaches, no trainer in time or
a trainer dying mid-task fails that site's part saying so, and the job goes on or fails as min_sites says."""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import numpy as np
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.client.attach_file import AttachError, read_attach
from flctl.node.client.attached_bridge import AttachedBridge
from flctl.node.client.script_bridge import ScriptError
from flctl.node.jobs.tasks import Task, TaskKind
from flctl.node.wire.tensors import decode, encode

from .federation import make_federation, running

TRAINER = '''
import os, sys, numpy as np
import flctl.client as fl

trainer = fl.attach(sys.argv[1], wait_s=60)
die_in_round = int(sys.argv[2]) if len(sys.argv) > 2 else -1
print("attached", trainer.site, trainer.job_id, flush=True)
while trainer.running():
    task = trainer.receive()
    if task.round == die_in_round:
        os._exit(3)                                   # the trainer dies mid-task
    step = 1.0 if trainer.site == "site-1" else 3.0
    params = {"w": task.params.get("w", np.zeros(3)) + step}
    trainer.log("step", step)
    trainer.send(fl.Model(params=params, num_examples=1, metrics={"step": step}))
print("job ended", flush=True)
'''


def _start_trainer(root: Path, place: Path | str, *extra: str) -> subprocess.Popen[str]:
    """A trainer the test starts, as a site's operator would: its own process, flctl nowhere in its ancestry."""
    (root / "trainer.py").write_text(TRAINER)
    return subprocess.Popen([sys.executable, str(root / "trainer.py"), str(place), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _external_job(root: Path, name: str, rounds: int, min_sites: int, attach_timeout_s: float = 60) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: 60}}}}\n"
        f"min_sites: {min_sites}\napp: {{external: true, attach_timeout_s: {attach_timeout_s}}}\n")
    return folder


def _agent_dirs(root: Path, job_id: str, sites: tuple[str, ...] = ("site-1", "site-2")) -> dict[str, Path]:
    """`sites`' `jobs/<job id>/agent` folders, once their job processes made them (and others seen meanwhile)."""
    found: dict[str, Path] = {}
    deadline = time.monotonic() + 60
    while not set(sites) <= set(found) and time.monotonic() < deadline:
        for attach in root.rglob(f"jobs/{job_id}/agent/attach.json"):
            found[json.loads(attach.read_text())["site"]] = attach.parent
        time.sleep(0.2)
    return found


@pytest.fixture
def trainers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_trainers_started_outside_flctl_do_a_job_on_a_real_federation(tmp_path: Path, trainers) -> None:
    """2 sites x 2 rounds: each site's trainer (started by the test: site-1's before the job, given its kit, site-2's
    given the job's agent folder) attaches, trains (w + 1 at site-1, w + 3 at site-2) and logs; the job FINISHES
    with FedAvg's exact result, [4, 4, 4] (round 1: mean of 1 and 3; round 2: 2 + mean of 1 and 3); the attach
    file and token are 0600 in a 0700 folder, and are gone once the trainer attached; the trainers see the job end
    and exit 0."""
    # Prepare
    (tmp_path / "fed").mkdir()
    with running(make_federation(tmp_path / "fed")) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        trainers.append(_start_trainer(tmp_path, fed.kit("site-1")))  # waits for a job there (wait_s)
        job_id = admin.submit_job(_external_job(tmp_path, "agent-job", rounds=2, min_sites=2))
        agents = _agent_dirs(fed.root / "ws", job_id, ("site-2",))  # site-1's may be gone: its trainer took it
        assert "site-2" in agents, fed.logs()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in
                 (agents["site-2"], agents["site-2"] / "attach.json", agents["site-2"] / "token")}
        # Execute
        trainers.append(_start_trainer(tmp_path, agents["site-2"]))
        list(admin.watch(job_id))
        info = admin.get_job(job_id)
        target = admin.download_job(job_id, tmp_path / "out")
        outputs = [proc.communicate(timeout=30)[0] for proc in trainers]
        left = sorted(p.name for p in agents["site-2"].iterdir())
    # Assert
    assert info.status == "FINISHED", (info.error, outputs, fed.logs())
    assert modes == {"agent": 0o700, "attach.json": 0o600, "token": 0o600}
    assert [proc.returncode for proc in trainers] == [0, 0], outputs
    assert all("attached" in out and "job ended" in out for out in outputs), outputs
    assert left == []
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(load_file(str(target / "models" / "final.safetensors"))["w"], [4.0, 4.0, 4.0])
    rows = json.loads((target / "metrics.json").read_text())
    assert sorted((r["site"], r["value"]) for r in rows if r["name"] == "step") == [
        ("site-1", 1.0), ("site-1", 1.0), ("site-2", 3.0), ("site-2", 3.0)]


def test_a_trainer_dying_mid_task_fails_its_site_and_the_job_goes_on_per_min_sites(tmp_path: Path,
                                                                                   trainers) -> None:
    """min_sites 1: site-2's trainer exits on its round-2 task; site-2 reports that its trainer went away, the
    job goes on with site-1 alone and FINISHES (w: 2 after round 1, then + 1 = 3)."""
    # Prepare
    (tmp_path / "fed").mkdir()
    with running(make_federation(tmp_path / "fed")) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(_external_job(tmp_path, "dying", rounds=2, min_sites=1))
        agents = _agent_dirs(fed.root, job_id)
        # Execute
        trainers.append(_start_trainer(tmp_path, agents["site-1"]))
        trainers.append(_start_trainer(tmp_path, agents["site-2"], "1"))
        events = list(admin.watch(job_id))
        info = admin.get_job(job_id)
        target = admin.download_job(job_id, tmp_path / "out")
    # Assert
    assert info.status == "FINISHED", (info.error, fed.logs())
    assert trainers[1].wait(10) == 3
    failed = [e for e in events if e.kind == "site_failed"]
    assert len(failed) == 1 and failed[0].data["site"] == "site-2", events
    assert "the external trainer went away" in failed[0].data["reason"], failed[0].data
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(load_file(str(target / "models" / "final.safetensors"))["w"], [3.0, 3.0, 3.0])


# -- the bridge alone, without a federation ----------------------------------------------------------------------


def _bridge(tmp_path: Path, attach_timeout_s: float = 30) -> tuple[AttachedBridge, list[str]]:
    lines: list[str] = []
    bridge = AttachedBridge(agent_dir=tmp_path / "job" / "agent", site="site-1", job_id="j1", on_output=lines.append,
                            on_metric=lambda *_: None, attach_timeout_s=attach_timeout_s)
    bridge.start()
    return bridge, lines


def test_no_trainer_within_the_attach_timeout_fails_the_task_saying_where_to_attach(tmp_path: Path) -> None:
    """attach_timeout_s 0.5 and no trainer: ScriptError naming the timeout and the attach file."""
    # Prepare
    bridge, _ = _bridge(tmp_path, attach_timeout_s=0.5)
    try:
        # Execute / Assert
        with pytest.raises(ScriptError, match=r"no external trainer attached within 0.5 s to take task 'train' "
                                              r"\(round 1\); start one .*flctl.client.attach\('.*attach.json'\)"):
            bridge.run_encoded(Task(TaskKind.TRAIN, 0, {}, {}), [encode({"w": np.zeros(2)})])
    finally:
        bridge.kill()
    assert not (tmp_path / "job" / "agent" / "token").exists()


def test_a_wrong_token_is_refused_and_the_right_one_still_attaches(tmp_path: Path, trainers) -> None:
    """A connection with another key fails its handshake (AuthenticationError) and is logged; the real trainer
    (by socket path and token file) attaches after it and answers the task."""
    # Prepare
    bridge, lines = _bridge(tmp_path)
    info = read_attach(tmp_path / "job" / "agent")
    try:
        with pytest.raises(AuthenticationError):
            Client(info.address, family="AF_UNIX", authkey=b"x" * 32)
        trainers.append(_start_trainer(tmp_path, info.address))
        # Execute
        answer, payload = bridge.run_encoded(Task(TaskKind.TRAIN, 0, {}, {}), [encode({"w": np.zeros(3)})],
                                             timeout_s=60)
    finally:
        bridge.finish()
    # Assert
    assert answer.metrics == {"step": 3.0}  # attached by socket path: no site name, so the other sites' step
    np.testing.assert_array_equal(decode(payload)["w"], [3.0, 3.0, 3.0])
    assert any("refused a trainer's connection" in line for line in lines), lines
    assert any("an external trainer attached at site-1 (pid " in line for line in lines), lines
    assert trainers[0].wait(30) == 0, trainers[0].communicate()[0]


def test_attach_says_what_is_missing(tmp_path: Path) -> None:
    """No attach file there: AttachError naming the folder and where a site writes one; a token it cannot read
    too."""
    # Execute / Assert
    with pytest.raises(AttachError, match=r"no attach file \(agent/attach.json\) or socket found within 0.3 s"):
        read_attach(tmp_path, wait_s=0.3)
    bridge, _ = _bridge(tmp_path)
    try:
        (tmp_path / "job" / "agent" / "token").unlink()
        with pytest.raises(AttachError, match=r"token: cannot read the token \(No such file or directory\); only "
                                              "the site's user can attach a trainer"):
            read_attach(tmp_path / "job")
    finally:
        bridge.kill()


def test_a_workspace_with_several_waiting_jobs_needs_the_job_named(tmp_path: Path) -> None:
    """attach by the site's workspace: one waiting job is found; with two, AttachError naming both, and job= (id or
    name) picks one."""
    # Prepare
    first = AttachedBridge(agent_dir=tmp_path / "jobs" / "id1" / "agent", site="site-1", job_id="id1",
                           job_name="alpha", on_output=lambda _: None, on_metric=lambda *_: None)
    second = AttachedBridge(agent_dir=tmp_path / "jobs" / "id2" / "agent", site="site-1", job_id="id2",
                            job_name="beta", on_output=lambda _: None, on_metric=lambda *_: None)
    first.start()
    try:
        alone = read_attach(tmp_path)
        second.start()
        # Execute / Assert
        with pytest.raises(AttachError, match=r"several jobs wait for a trainer: id1 \(alpha\), id2 \(beta\); say "
                                              r"which \(job=ID or NAME\)"):
            read_attach(tmp_path)
        assert (alone.job_id, alone.job_name) == ("id1", "alpha")
        assert read_attach(tmp_path, job="beta").job_id == "id2"
        assert read_attach(tmp_path, job="id1").job_name == "alpha"
    finally:
        first.kill()
        second.kill()


def test_the_simulator_refuses_an_external_job_with_exit_2(tmp_path: Path) -> None:
    """flctl simulate has no sites for a trainer to attach to: exit 2, saying so."""
    from .federation import FLCTL

    # Execute
    out = subprocess.run([FLCTL, "simulate", str(_external_job(tmp_path, "ext", 1, 1)), "-n", "2", "-w",
                          str(tmp_path / "ws")], capture_output=True, text=True, timeout=60, check=False)
    # Assert
    assert out.returncode == 2, out.stdout + out.stderr
    assert "says app: {external: true}: its trainers attach to the sites of a federation" in out.stderr


def test_the_example_job_with_its_trainer_on_a_real_federation(tmp_path: Path, trainers) -> None:
    """playbooks/jobs/external-trainer with its trainer.py started at each site, given the site's kit and the job's
    name, before the job: FINISHED, and its final w equals FedAvg by hand of the same gradient steps (float64)."""
    from .conftest import ROOT

    example = ROOT / "playbooks" / "jobs" / "external-trainer"
    spec = importlib.util.spec_from_file_location("external_trainer_example", example / "trainer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    w = np.zeros(3)
    for _ in range(3):
        answers = []
        for site in ("site-1", "site-2"):
            x, y = module.site_data(site)
            local = w.copy()
            for _ in range(module.STEPS):
                local -= module.LEARNING_RATE * 2 * x.T @ (x @ local - y) / len(x)
            answers.append(local)
        w = (answers[0] + answers[1]) / 2
    (tmp_path / "fed").mkdir()
    with running(make_federation(tmp_path / "fed")) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        for site in ("site-1", "site-2"):
            trainers.append(subprocess.Popen(
                [sys.executable, str(example / "trainer.py"), str(fed.kit(site)), "--job", "external-trainer",
                 "--wait-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True))
        # Execute
        job_id = admin.submit_job(example)
        list(admin.watch(job_id))
        info = admin.get_job(job_id)
        target = admin.download_job(job_id, tmp_path / "out")
        outputs = [proc.communicate(timeout=30)[0] for proc in trainers]
    # Assert
    assert info.status == "FINISHED", (info.error, outputs)
    from safetensors.numpy import load_file

    np.testing.assert_allclose(load_file(str(target / "models" / "final.safetensors"))["w"], w, rtol=1e-12)
    np.testing.assert_allclose(w, module.TRUE_W, atol=0.05)
    assert all("attached to job" in out and "the job ended at this site" in out for out in outputs), outputs


def test_a_pytorch_job_s_trainer_gets_tensors_and_its_state_dict_goes_back(tmp_path: Path, trainers) -> None:
    """framework pytorch (from the attach file): the trainer receives torch tensors and sends a state_dict as it
    is; the bridge gets its arrays back under the same names."""
    pytest.importorskip("torch")
    # Prepare
    bridge = AttachedBridge(agent_dir=tmp_path / "job" / "agent", site="site-1", job_id="j1",
                            on_output=lambda _: None, on_metric=lambda *_: None, framework="pytorch")
    bridge.start()
    (tmp_path / "torch_trainer.py").write_text(
        "import sys, torch\nimport flctl.client as fl\ntrainer = fl.attach(sys.argv[1])\n"
        "while trainer.running():\n    task = trainer.receive()\n"
        "    assert isinstance(task.params['fc.weight'], torch.Tensor), task.params\n"
        "    net = torch.nn.Linear(2, 1)\n    net.load_state_dict({k[3:]: v for k, v in task.params.items()})\n"
        "    net.weight.data += 1\n"
        "    trainer.send(fl.Model(params={'fc.' + k: v for k, v in net.state_dict().items()}, num_examples=2))\n")
    trainers.append(subprocess.Popen([sys.executable, str(tmp_path / "torch_trainer.py"), str(tmp_path / "job")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        # Execute
        answer, payload = bridge.run_encoded(Task(TaskKind.TRAIN, 0, {}, {}), [encode(
            {"fc.weight": np.array([[1.0, 2.0]], "float32"), "fc.bias": np.array([0.5], "float32")})], timeout_s=60)
    finally:
        bridge.finish()
    # Assert
    assert trainers[0].wait(30) == 0, trainers[0].communicate()[0]
    params = decode(payload)
    np.testing.assert_array_equal(params["fc.weight"], [[2.0, 3.0]])
    np.testing.assert_array_equal(params["fc.bias"], [0.5])
    assert answer.num_examples == 2
