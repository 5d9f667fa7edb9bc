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
from .job_folders import workflow_job

ROOT = Path(__file__).resolve().parent.parent
SLOW_NUMPY = """\
api_version: 1
name: slow-numpy
workflow: {{type: {workflow}, args: {{rounds: {rounds}, {timeout}: 60{extra}}}}}
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
    timeout = "site_timeout_s" if workflow == "cyclic" else "round_timeout_s"
    (job / "job.yml").write_text(SLOW_NUMPY.format(rounds=rounds, min_sites=min_sites, workflow=workflow,
                                                   timeout=timeout, extra=extra))
    source = (ROOT / "playbooks/jobs/hello-numpy/app/train.py").read_text()
    pause = f"        model = fl.receive()\n        import time; time.sleep({pause_s})\n"
    source = source.replace("        model = fl.receive()\n", pause)
    (job / "app" / "train.py").write_text(source)
    return job


def hello_numpy_train():
    spec = importlib.util.spec_from_file_location("hello_numpy_train", ROOT / "playbooks/jobs/hello-numpy/app/train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train


def expected_model(sites: list[str], rounds: int, optimizer: str = "", lr: float = 1.0, momentum: float = 0.0,
                   beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> dict[str, np.ndarray]:
    """hello-numpy's final model by FedAvg, or with `optimizer` by FedOpt (Reddi et al.: d = a - x; sgdm
    m = momentum m + d, x += lr m; adam m = b1 m + (1-b1) d, v = b2 v + (1-b2) d², x += lr m / (√v + tau)),
    computed plainly; round 0 starts from no model, so its average is taken as it is."""
    train = hello_numpy_train()
    model: dict[str, np.ndarray] = {}
    m: dict[str, np.ndarray] = {}
    v: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        answers = [train.train_round(model, site) for site in sites]
        total = sum(n for _, _, n in answers)
        average = {k: (sum(p[k].astype(np.float64) * n for p, _, n in answers) / total).astype(np.float32)
                   for k in answers[0][0]}
        if not optimizer or not model:
            model = average
            continue
        for k in model:
            d = average[k].astype(np.float64) - model[k]
            if optimizer == "sgdm":
                m[k] = momentum * m.get(k, 0) + d
                model[k] = (model[k] + lr * m[k]).astype(np.float32)
                continue
            m[k] = beta1 * m.get(k, 0) + (1 - beta1) * d
            v[k] = beta2 * v.get(k, tau ** 2) + (1 - beta2) * d ** 2
            model[k] = (model[k] + lr * m[k] / (np.sqrt(v[k]) + tau)).astype(np.float32)
    return model


def expected_cyclic(sites: list[str], rounds: int, seed: int) -> dict[str, np.ndarray]:
    """hello-numpy's model carried site to site, in the orders `random_without_same_in_a_row` draws."""
    from flctl.node.workflows.cyclic import Cyclic, CyclicArgs

    train = hello_numpy_train()
    orders = Cyclic(CyclicArgs(rounds=rounds, order="random_without_same_in_a_row", seed=seed))
    model: dict[str, np.ndarray] = {}
    for round_no in range(rounds):
        order = orders.order(round_no, sorted(sites))
        for site in order:
            model, _, _ = train.train_round(model, site)
        orders.last_site = order[-1]
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


def finished_after_a_server_kill(fed: Federation, job: Path, out: Path) -> Path:
    """Submit `job`, SIGKILL the server once round 1 is done, restart it; the job's downloaded folder once it
    FINISHED, resumed."""
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
        target = admin.download_job(job_id, out)
    assert "resumed" in kinds
    return target


STATEFUL = {  # workflow: (its arguments in job.yml, the plain reference of its final model)
    "fedavgm": (", server_learning_rate: 0.7, server_momentum: 0.8",
                lambda sites, rounds: expected_model(sites, rounds, "sgdm", 0.7, momentum=0.8)),
    "fedopt": (", optimizer: adam, server_lr: 0.05, beta1: 0.8, beta2: 0.9",
               lambda sites, rounds: expected_model(sites, rounds, "adam", 0.05, beta1=0.8, beta2=0.9)),
    "cyclic": (", order: random_without_same_in_a_row, seed: 5",
               lambda sites, rounds: expected_cyclic(sites, rounds, 5)),
    "swarm": (", aggregator: random, seed: 3", expected_model),  # a site aggregates; the model is FedAvg's
}


@pytest.mark.parametrize("workflow", sorted(STATEFUL))
def test_a_stateful_workflow_resumes_with_its_state_after_a_server_kill(fed, tmp_path, workflow):
    """A workflow's state (momentum, moments, the cyclic order's last site) is saved with each round: SIGKILLed
    after round 1 and restarted, the server restores it and the job ends with the model of an uninterrupted run."""
    rounds = 5
    args, reference = STATEFUL[workflow]
    job = slow_job(tmp_path, rounds, 2, 0.4, workflow, args)
    target = finished_after_a_server_kill(fed, job, tmp_path / "out")
    assert "the workflow's state restored from round-" in (target / "logs" / "server.log").read_text()
    final = load_file(target / "models" / "final.safetensors")
    expected = reference(fed.sites, rounds)
    if workflow != "swarm":
        assert not np.allclose(expected["w"], expected_model(fed.sites, rounds)["w"]), "not FedAvg's result"
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


def test_scaffold_resumes_with_its_control_variate_after_a_server_kill(fed, tmp_path):
    """SCAFFOLD's c is saved with each round and the sites keep their c_i in their running scripts: SIGKILLed after
    round 1 and restarted, the job ends with the model of the plain reference (an uninterrupted run)."""
    from .test_scaffold import TRAIN, reference

    rounds = 5
    pause = "        model = fl.receive()\n        import time; time.sleep(0.4)\n"
    job = workflow_job(tmp_path, "scaffold", "scaffold", {"rounds": rounds, "round_timeout_s": 60},
                       TRAIN.replace("        model = fl.receive()\n", pause))
    target = finished_after_a_server_kill(fed, job, tmp_path / "out")
    final = load_file(target / "models" / "final.safetensors")["weight"].reshape(-1)
    np.testing.assert_allclose(final, reference(rounds, 1.0, np.zeros(2), sites=fed.sites), rtol=0, atol=1e-9)
