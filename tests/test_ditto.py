"""Ditto against a plain numpy reference of Algorithm 1 (Li et al. 2021) on a linear model: the example job in the
simulator gives the reference's global model and every site's personal loss each round; the workflow's arguments,
meta and report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.tasks import TaskResult
from flctl.node.simulator.runtime import simulate
from flctl.node.wire import tensors
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.ditto import Ditto, DittoArgs

from .conftest import ROOT
from .test_example_jobs import load_script
from .test_fedavg import FakeFederation

JOB = ROOT / "playbooks" / "jobs" / "ditto"
SITES = ["site-1", "site-2", "site-3"]


def reference(data: dict[str, tuple[np.ndarray, np.ndarray]], rounds: int, lam: float, lr: float, steps: int,
              personal_steps: int) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Algorithm 1 written out: global by FedAvg of `steps` GD steps (weights: rows), v_k by `personal_steps` steps
    of grad + lam (v_k - w^t); v_k starts at the first global model. Each round's personal losses."""
    def grad(w, x, y):
        return x.T @ (x @ w - y) / len(y)

    w = np.zeros(data[SITES[0]][0].shape[1])
    personal: dict[str, np.ndarray] = {}
    losses = []
    for _ in range(rounds):
        trained, weights, round_losses = [], [], {}
        for site, (x, y) in data.items():
            local = w.copy()
            for _ in range(steps):
                local = local - lr * grad(local, x, y)
            v = personal.get(site, w.copy())
            for _ in range(personal_steps):
                v = v - lr * (grad(v, x, y) + lam * (v - w))
            personal[site] = v
            round_losses[site] = float(np.mean((x @ v - y) ** 2) / 2)
            trained.append(local)
            weights.append(len(y))
        w = sum(n * t for n, t in zip(weights, trained, strict=True)) / sum(weights)
        losses.append(round_losses)
    return w, losses


def test_the_example_gives_the_numpy_references_global_model_and_personal_losses(tmp_path, monkeypatch):
    """3 simulated sites, 10 rounds, lambda 0.5: the global model and each site's personal loss per round match the
    reference to 1e-10; the report holds both models' last metrics per site."""
    # Prepare
    script = load_script(JOB / "app" / "train.py", monkeypatch)
    data = {site: script.site_data(site) for site in SITES}
    # Execute
    result = simulate(load_job(JOB), SITES, tmp_path / "ws", 1)
    # Assert
    assert result.status == "FINISHED", result.error
    expected, losses = reference(data, 10, 0.5, script.LR, script.LOCAL_STEPS, script.PERSONAL_STEPS)
    final = tensors.decode((result.job_dir / "models" / "final.safetensors").read_bytes())["w"]
    np.testing.assert_allclose(final, expected, rtol=0, atol=1e-10)
    metrics = json.loads((result.job_dir / "metrics.json").read_text())
    personal = {(m["site"], m["round"]): m["value"] for m in metrics if m["name"] == "personal_loss"}
    for round_no, round_losses in enumerate(losses):
        for site, value in round_losses.items():
            assert personal[(site, round_no)] == pytest.approx(value, abs=1e-10)
    report = json.loads((result.job_dir / "reports" / "ditto.json").read_text())
    assert set(report["sites"]) == set(SITES) and report["lambda"] == 0.5
    assert report["sites"]["site-1"]["personal"]["loss"] == pytest.approx(losses[-1]["site-1"], abs=1e-10)
    assert "loss" in report["sites"]["site-1"]["global"]


def test_lambda_travels_in_every_task_and_a_site_without_personal_metrics_is_named():
    """`lambda` is accepted as the argument's other name; each task's meta carries it; the log names a site whose
    answers say nothing of its personal model."""
    # Prepare
    args = Ditto.parse_args({"rounds": 2, "lambda": 0.25})
    fed = FakeFederation({"a": lambda task: TaskResult("a", {"w": np.ones(2)}, 1, {"loss": 1.0})})
    # Execute
    Ditto(args).run(fed, {"w": np.zeros(2)})
    # Assert
    assert WORKFLOWS["ditto"] is Ditto and isinstance(args, DittoArgs)
    assert [task.meta["ditto_lambda"] for task, _, _ in fed.tasks] == [0.25, 0.25]
    assert any("a sent no personal_<metric>" in line for line in fed.lines)
    with pytest.raises(ValueError, match="ditto_lambda"):
        Ditto.parse_args({"rounds": 2})
    with pytest.raises(ValueError, match="secure_aggregation"):
        Ditto.parse_args({"rounds": 2, "lambda": 1, "secure_aggregation": "masking"})
