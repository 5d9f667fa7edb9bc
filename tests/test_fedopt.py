"""FedOpt (sgdm, adam, yogi, adagrad) against a plain numpy reference of Reddi et al.'s Algorithm 2: 3 sites with
different data sizes, 3 rounds; its state restored on resume; its arguments checked at submit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.tasks import Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.fedopt import FedOpt, FedOptArgs

from .test_fedavg import Site, fedavg
from .test_workflow_state import StatefulFederation

TARGETS = {"site-1": np.array([1.0, -2.0, 0.5]), "site-2": np.array([3.0, 0.0, -1.0]),
           "site-3": np.array([-1.0, 4.0, 2.0])}
EXAMPLES = {"site-1": 10, "site-2": 20, "site-3": 70}
X0 = np.array([0.2, 0.1, -0.3])


def pulls(site: str) -> Site:
    """A deterministic local training: half way from the model to the site's own target (float64)."""

    def train(task: Task) -> TaskResult:
        w = task.params["w"]
        return TaskResult(site, {"w": w + 0.5 * (TARGETS[site] - w)}, EXAMPLES[site], {"loss": 1.0})

    return train


def three_sites() -> StatefulFederation:
    return StatefulFederation({site: pulls(site) for site in TARGETS})


def reference(optimizer: str, rounds: int, lr: float, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3,
              momentum: float = 0.0) -> np.ndarray:
    """Reddi et al. 2021, Algorithm 2, written out plainly: d = a - x; m, v; x += lr * m / (sqrt(v) + tau)."""
    x, m, v = X0.copy(), np.zeros(3), np.full(3, tau ** 2)
    total = sum(EXAMPLES.values())
    for _ in range(rounds):
        a = sum((x + 0.5 * (TARGETS[s] - x)) * EXAMPLES[s] for s in TARGETS) / total
        d = a - x
        if optimizer == "sgdm":
            m = momentum * m + d
            x = x + lr * m
            continue
        m = beta1 * m + (1 - beta1) * d
        if optimizer == "adagrad":
            v = v + d ** 2
        elif optimizer == "yogi":
            v = v - (1 - beta2) * d ** 2 * np.sign(v - d ** 2)
        else:
            v = beta2 * v + (1 - beta2) * d ** 2
        x = x + lr * m / (np.sqrt(v) + tau)
    return x


def fedopt(rounds: int, **args: object) -> FedOpt:
    return FedOpt(FedOptArgs(rounds=rounds, **args))  # type: ignore[arg-type]


@pytest.mark.parametrize(("optimizer", "args"), [
    ("sgdm", {"server_lr": 0.8, "momentum": 0.9}),
    ("adam", {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}),
    ("yogi", {"server_lr": 0.05, "beta1": 0.8, "beta2": 0.95, "tau": 1e-2}),
    ("adagrad", {"server_lr": 0.1, "beta1": 0.5, "tau": 1e-3}),
])
def test_each_optimizer_is_exact_against_the_reference(optimizer, args):
    """Three sites of 10, 20 and 70 examples, three rounds: the final model equals the formula's within 1e-6."""
    # Prepare
    fed = three_sites()
    # Execute
    final = fedopt(3, optimizer=optimizer, **args).run(fed, {"w": X0.copy()})
    # Assert
    want = reference(optimizer, 3, args["server_lr"], **{k: v for k, v in args.items() if k != "server_lr"})
    np.testing.assert_allclose(final["w"], want, rtol=0, atol=1e-6)
    assert not np.allclose(want, reference("sgdm", 3, 1.0), atol=1e-3), "the optimizer changes the result"


def test_sgdm_with_no_momentum_and_rate_one_is_fedavg_exactly():
    """FedOpt sgdm, momentum 0, server_lr 1: the same models as FedAvg, bit for bit."""
    # Prepare
    plain, stepped = three_sites(), three_sites()
    # Execute
    fedavg(rounds=3).run(plain, {"w": X0.copy()})
    fedopt(3, optimizer="sgdm", server_lr=1.0, momentum=0.0).run(stepped, {"w": X0.copy()})
    # Assert
    for name in ("round-0", "round-1", "round-2", "final"):
        np.testing.assert_array_equal(stepped.models[name]["w"], plain.models[name]["w"])


def test_the_default_learning_rates_are_flowers():
    """Unset, server_lr is Flower's eta for each optimizer (1.0 for sgdm)."""
    # Prepare / Execute / Assert
    rates = {opt: FedOpt.hyper_of(FedOptArgs(rounds=1, optimizer=opt)).lr
             for opt in ("sgdm", "adam", "yogi", "adagrad")}
    assert rates == {"sgdm": 1.0, "adam": 0.1, "yogi": 0.01, "adagrad": 0.1}
    assert WORKFLOWS["fedopt"] is FedOpt


@pytest.mark.parametrize("optimizer", ["adam", "yogi", "adagrad", "sgdm"])
def test_a_resumed_run_with_its_moments_restored_ends_as_an_uninterrupted_one(optimizer):
    """Stopped after round 1 and resumed with round 1's model and moments: the same final model."""
    # Prepare
    args = {"optimizer": optimizer, "momentum": 0.5, "server_lr": 0.3}
    whole, first, rest = three_sites(), three_sites(), three_sites()
    fedopt(4, **args).run(whole, {"w": X0.copy()})
    fedopt(2, **args).run(first, {"w": X0.copy()})
    resumed = fedopt(4, **args)
    # Execute
    resumed.restore(first.states["round-1"])
    final = resumed.run(rest, first.models["round-1"], start_round=2)
    # Assert
    np.testing.assert_array_equal(final["w"], whole.models["final"]["w"])
    expected = {"m/w", "v/w"} if optimizer != "sgdm" else {"m/w"}
    assert set(first.states["round-1"].arrays) == expected


@pytest.mark.parametrize(("line", "message"), [
    ("beta1: 1.5", "workflow.args.beta1"),
    ("optimizer: adamw", "workflow.args.optimizer"),
    ("server_lr: -1", "workflow.args.server_lr"),
    ("lr: 0.1", "workflow.args.lr"),
])
def test_bad_arguments_are_refused_when_the_job_is_read(tmp_path: Path, line: str, message: str):
    """An unknown or out-of-range argument names workflow.args.<key>, as every job.yml problem does."""
    # Prepare
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "train.py").write_text("")
    (tmp_path / "job.yml").write_text(textwrap.dedent(f"""\
        api_version: 1
        name: opt
        workflow:
          type: fedopt
          args:
            rounds: 2
            {line}
        app: {{command: [python, train.py]}}
        """))
    # Execute / Assert
    with pytest.raises(JobError) as caught:
        load_job(tmp_path)
    assert message in str(caught.value)
