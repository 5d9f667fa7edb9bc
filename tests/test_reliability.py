"""Faults with real processes: the server killed mid-job resumes it; a site killed mid-round rejoins later."""

from __future__ import annotations

import importlib.util
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.admin.admin_client import AdminClient

from .federation import Federation, events_until_round, make_federation, running

ROOT = Path(__file__).resolve().parent.parent
SLOW_NUMPY = """\
api_version: 1
name: slow-numpy
workflow: {{type: {workflow}, args: {{rounds: {rounds}, round_timeout_s: 60{extra}}}}}
sites: all
min_sites: {min_sites}
"""


@pytest.fixture
def fed(tmp_path) -> Iterator[Federation]:
    with running(make_federation(tmp_path)) as federation:
        yield federation


def slow_job(root: Path, rounds: int, min_sites: int, pause_s: float, workflow: str = "fedavg",
             extra: str = "") -> Path:
    """hello-numpy's training with a pause per round, so a test can act mid-job."""
    job = root / "slow-numpy"
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text(SLOW_NUMPY.format(rounds=rounds, min_sites=min_sites, workflow=workflow,
                                                   extra=extra))
    source = (ROOT / "playbooks/jobs/hello-numpy/app/train.py").read_text()
    pause = f"        model = fl.receive()\n        import time; time.sleep({pause_s})\n"
    source = source.replace("        model = fl.receive()\n", pause)
    (job / "app" / "train.py").write_text(source)
    return job


def expected_model(sites: list[str], rounds: int, lr: float = 1.0, momentum: float | None = None
                   ) -> dict[str, np.ndarray]:
    """hello-numpy's final model by FedAvg, or with `momentum` by FedAvgM (Hsu et al.), computed plainly."""
    spec = importlib.util.spec_from_file_location("hello_numpy_train", ROOT / "playbooks/jobs/hello-numpy/app/train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    model: dict[str, np.ndarray] = {}
    velocity: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        answers = [train.train_round(model, site) for site in sites]
        total = sum(n for _, _, n in answers)
        average = {k: (sum(p[k].astype(np.float64) * n for p, _, n in answers) / total).astype(np.float32)
                   for k in answers[0][0]}
        if momentum is None or not model:  # FedAvg, or FedAvgM's round 0 with no model to step from
            model = average
            continue
        for k in model:
            g = model[k].astype(np.float64) - average[k]
            velocity[k] = momentum * velocity[k] + g if k in velocity else g
            model[k] = (model[k] - lr * velocity[k]).astype(np.float32)
    return model


def test_server_killed_mid_job_resumes_from_its_checkpoint(fed, tmp_path):
    """SIGKILL the server after round 1; restarted, it resumes at round 2 and ends with the exact same model."""
    rounds = 5
    job = slow_job(tmp_path, rounds, 2, 0.4)
    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        seen = events_until_round(admin, job_id, 1)
    fed.stop("localhost", signal.SIGKILL)
    fed.start("localhost")
    fed.wait_online(fed.sites, timeout=40)
    with AdminClient.from_kit(fed.admin_kit) as admin:
        events = list(admin.watch(job_id))
        info = admin.get_job(job_id)
        assert info.status == "FINISHED", info.error + fed.logs()
        target = admin.download_job(job_id, tmp_path / "out")
    kinds = [e.kind for e in events]
    assert "resumed" in kinds
    before = [e.seq for e in seen]
    assert [e.seq for e in events[: len(before)]] == before, "no event recorded before the kill is lost"
    final = load_file(target / "models" / "final.safetensors")
    expected = expected_model(fed.sites, rounds)
    for name, value in expected.items():
        np.testing.assert_allclose(final[name], value, rtol=1e-6, atol=1e-7)


def test_a_stateful_workflow_resumes_with_its_state_after_a_server_kill(fed, tmp_path):
    """FedAvgM's momentum is saved with each round: SIGKILLed after round 1 and restarted, the server restores it
    and the job ends with the model of an uninterrupted run (a lost momentum would give another)."""
    rounds, lr, momentum = 5, 0.7, 0.8
    job = slow_job(tmp_path, rounds, 2, 0.4, "fedavgm", f", server_learning_rate: {lr}, server_momentum: {momentum}")
    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        events_until_round(admin, job_id, 1)
    fed.stop("localhost", signal.SIGKILL)
    fed.start("localhost")
    fed.wait_online(fed.sites, timeout=40)
    with AdminClient.from_kit(fed.admin_kit) as admin:
        kinds = [e.kind for e in admin.watch(job_id)]
        info = admin.get_job(job_id)
        assert info.status == "FINISHED", info.error + fed.logs()
        target = admin.download_job(job_id, tmp_path / "out")
    assert "resumed" in kinds
    assert "the workflow's state restored from round-" in (target / "logs" / "server.log").read_text()
    final = load_file(target / "models" / "final.safetensors")
    expected = expected_model(fed.sites, rounds, lr, momentum)
    assert not np.allclose(expected["w"], expected_model(fed.sites, rounds)["w"]), "the momentum matters here"
    for name, value in expected.items():
        np.testing.assert_allclose(final[name], value, rtol=1e-5, atol=1e-6)


def test_site_killed_mid_round_is_dropped_then_rejoins(fed, tmp_path):
    """With min_sites 1 the rounds go on without a killed site; restarted, it takes part again."""
    job = slow_job(tmp_path, 150, 1, 0.5)  # aborted as soon as the site is back
    without: set[int] = set()
    rejoined_in: set[int] = set()
    with AdminClient.from_kit(fed.admin_kit) as admin:
        job_id = admin.submit_job(job)
        events_until_round(admin, job_id, 0)
        fed.stop("site-2", signal.SIGKILL)
        restarted = False
        for event in admin.watch(job_id):
            if event.kind == "site_failed" and "site-2" in event.message and not restarted:
                fed.start("site-2")
                restarted = True
            if event.kind == "round" and restarted:
                (rejoined_in if "site-2" in event.data.get("metrics", {}) else without).add(event.data["round"])
                if rejoined_in:
                    break
        admin.abort_job(job_id)
        kinds = [e.kind for e in admin.watch(job_id)]
    assert restarted, "the server noticed the killed site"
    assert without, "rounds completed without the killed site"
    assert rejoined_in and min(rejoined_in) > min(without), "the restarted site answered a later round"
    assert "site_rejoined" in kinds
