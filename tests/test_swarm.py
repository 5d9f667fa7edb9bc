"""Swarm: sites train, one site aggregates (its Client API, not its script), the server relays; the same model as
FedAvg's, an aggregator that fails is taken over, and an unchanged train-only script takes part."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.client.swarm import weighted_mean
from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs
from flctl.node.workflows.state import WorkflowState
from flctl.node.workflows.swarm import Swarm, SwarmArgs

from .federation import FLCTL
from .job_folders import workflow_job
from .test_fedavg import Site
from .test_fedopt import TARGETS, X0, pulls
from .test_workflow_state import StatefulFederation


def swarm_site(name: str, fails_to_aggregate: bool = False) -> Site:
    """A site that trains like `pulls` and aggregates as its Client API would (or fails to)."""
    train = pulls(name)

    def answer(task: Task) -> TaskResult | SiteFailure:
        if task.kind == "aggregate":
            if fails_to_aggregate:
                return SiteFailure(name, "its script crashed")
            return TaskResult(name, weighted_mean(task.params, task.meta["weights"]), 1)
        return train(task)

    return answer


def sites(failing: str = "") -> StatefulFederation:
    return StatefulFederation({name: swarm_site(name, name == failing) for name in TARGETS})


def swarm(rounds: int, **args: object) -> Swarm:
    return Swarm(SwarmArgs(rounds=rounds, **args))  # type: ignore[arg-type]


def test_a_swarm_ends_on_fedavgs_model_with_a_site_aggregating_each_round():
    """Three sites of 10/20/70 examples, three rounds: FedAvg's model within 1e-12; each round one site aggregates."""
    # Prepare
    fed = sites()
    plain = StatefulFederation({name: pulls(name) for name in TARGETS})
    # Execute
    final = swarm(3).run(fed, {"w": X0.copy()})
    want = FedAvg(FedAvgArgs(rounds=3)).run(plain, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(final["w"], want["w"], rtol=0, atol=1e-12)
    aggregations = [(sites_, task.round) for task, sites_, _ in fed.tasks if task.kind == "aggregate"]
    assert aggregations == [(["site-1"], 0), (["site-2"], 1), (["site-3"], 2)]
    assert set(fed.tasks[1][0].params) == {"site-1/w", "site-2/w", "site-3/w"}
    assert fed.tasks[1][0].meta == {"weights": {"site-1": 10, "site-2": 20, "site-3": 70}}
    assert fed.states["round-2"].values == {"aggregators": {"0": "site-1", "1": "site-2", "2": "site-3"}}
    assert WORKFLOWS["swarm"] is Swarm


def test_a_failing_aggregator_is_taken_over_and_the_round_completes():
    """site-2 cannot aggregate round 1: site-3 takes over, the model is the same."""
    # Prepare
    fed, whole = sites(failing="site-2"), sites()
    # Execute
    final = swarm(2).run(fed, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(final["w"], swarm(2).run(whole, {"w": X0.copy()})["w"], rtol=0, atol=1e-12)
    assert "round 2: site-2 could not aggregate (its script crashed); the next site takes over" in fed.lines
    assert fed.states["round-1"].values["aggregators"]["1"] == "site-3"
    assert fed.lines[-1] == "round 2 of 2: 3 of 3 sites trained, site-3 aggregated"


def test_no_site_able_to_aggregate_fails_the_round():
    """Every candidate fails: the job fails naming them."""
    # Prepare
    fed = StatefulFederation({name: swarm_site(name, True) for name in TARGETS})
    # Execute / Assert
    with pytest.raises(WorkflowError, match="round 1: no site could aggregate"):
        swarm(1).run(fed, {"w": X0.copy()})


def test_the_aggregator_rules():
    """round_robin turns through the sites, a list takes turns before the others, random follows the seed."""
    # Prepare
    names = ["a", "b", "c"]
    # Execute / Assert
    assert [swarm(3).candidates(r, names)[0] for r in range(4)] == ["a", "b", "c", "a"]
    assert swarm(3, aggregator=["c", "a"]).candidates(1, names) == ["a", "c", "b"]
    drawn = [swarm(3, aggregator="random", seed=4).candidates(r, names) for r in range(6)]
    assert drawn == [swarm(3, aggregator="random", seed=4).candidates(r, names) for r in range(6)]
    assert all(sorted(order) == names for order in drawn)
    with pytest.raises(WorkflowError, match="saved swarm state is damaged"):
        swarm(3).restore(WorkflowState({"aggregators": {"x": "a"}}))


def test_weighted_mean_refuses_models_without_a_weight():
    """The aggregator's Client API names a site whose model came without a weight."""
    # Prepare / Execute / Assert
    with pytest.raises(ValueError, match="carries models of site-9 without a weight"):
        weighted_mean({"site-9/w": np.zeros(2)}, {"site-1": 1})


def test_hello_numpy_unchanged_runs_as_a_swarm_in_the_simulator(tmp_path: Path):
    """A train-only script (hello-numpy) takes part unchanged: its Client API answers the aggregate tasks; the final
    model is FedAvg's."""
    # Prepare
    root = Path(__file__).resolve().parent.parent
    source = (root / "playbooks/jobs/hello-numpy/app/train.py").read_text()
    job = workflow_job(tmp_path, "swarm", "swarm", {"rounds": 3, "round_timeout_s": 60}, source)
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=120, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    from .test_reliability import expected_model

    final = load_file(tmp_path / "ws" / "swarm" / "models" / "final.safetensors")
    for name, value in expected_model(["site-1", "site-2", "site-3"], 3).items():
        np.testing.assert_allclose(final[name], value, rtol=1e-6, atol=1e-7)
    log = (tmp_path / "ws" / "swarm" / "logs" / "server.log").read_text()
    assert "3 of 3 sites trained, site-3 aggregated" in log
