"""Cyclic weight transfer against a plain reference: the model visits the sites in turn; orders, failures, unusable
answers, and the state (the last site) restored on resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.cyclic import Cyclic, CyclicArgs
from flctl.node.workflows.state import WorkflowState

from .test_fedavg import Site
from .test_fedopt import TARGETS, X0, pulls
from .test_workflow_state import StatefulFederation


def cyclic(rounds: int, min_sites: int = 1, **args: object) -> Cyclic:
    return Cyclic(CyclicArgs(rounds=rounds, **args), min_sites)  # type: ignore[arg-type]


def three_sites(**overrides: Site) -> StatefulFederation:
    return StatefulFederation({site: overrides.get(site, pulls(site)) for site in TARGETS})


def reference(orders: list[list[str]]) -> np.ndarray:
    """Each site in turn trains the model it is handed: half way to its own target."""
    x = X0.copy()
    for order in orders:
        for site in order:
            x = x + 0.5 * (TARGETS[site] - x)
    return x


def test_registered_as_cyclic_with_nvidia_flares_orders():
    """job.yml's `type: cyclic`; orders fixed, random, random_without_same_in_a_row or a list; others refused."""
    # Prepare / Execute / Assert
    assert WORKFLOWS["cyclic"] is Cyclic
    assert Cyclic.parse_args({"rounds": 2}).order == "fixed"  # type: ignore[attr-defined]
    assert Cyclic.parse_args({"rounds": 2, "order": ["b", "a"]}).order == ["b", "a"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="order"):
        Cyclic.parse_args({"rounds": 2, "order": "sideways"})


def test_the_model_visits_every_site_in_order_each_round_exactly():
    """Fixed order, three rounds: the final model is the reference's, each task goes to one site only."""
    # Prepare
    fed = three_sites()
    # Execute
    final = cyclic(3).run(fed, {"w": X0.copy()})
    # Assert
    order = ["site-1", "site-2", "site-3"]
    np.testing.assert_allclose(final["w"], reference([order] * 3), rtol=0, atol=1e-12)
    assert [sites for _, sites, _ in fed.tasks] == [[site] for site in order] * 3
    assert [task.meta["position"] for task, _, _ in fed.tasks] == [0, 1, 2] * 3
    assert list(fed.models) == ["round-0", "round-1", "round-2", "final"]
    assert fed.rounds[0] == {site: {"loss": 1.0} for site in order}
    assert fed.lines[0] == "round 1 of 3: the model went through site-1 -> site-2 -> site-3"


def test_a_listed_order_is_followed_and_sites_not_in_the_job_are_passed_over():
    """order: [site-3, site-1, site-9]: site-9 is not in the job (logged), site-2 is not in the order."""
    # Prepare
    fed = three_sites()
    # Execute
    final = cyclic(2, order=["site-3", "site-1", "site-9"]).run(fed, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(final["w"], reference([["site-3", "site-1"]] * 2), rtol=0, atol=1e-12)
    assert "round 1: site-9 in the order but not in the job; passed over" in fed.lines


def test_random_orders_come_from_the_seed_and_never_repeat_a_site_in_a_row():
    """The same seed draws the same orders; random_without_same_in_a_row never starts with the last site."""
    # Prepare
    sites = [f"site-{i}" for i in range(1, 4)]
    workflow = cyclic(50, order="random_without_same_in_a_row", seed=3)
    # Execute
    orders = []
    for round_no in range(50):
        orders.append(workflow.order(round_no, sites))
        workflow.last_site = orders[-1][-1]
    again = cyclic(50, order="random", seed=3)
    # Assert
    assert all(sorted(order) == sites for order in orders)
    assert all(a[-1] != b[0] for a, b in itertools.pairwise(orders))
    assert len({tuple(order) for order in orders}) > 1, "the orders are shuffled"
    assert [again.order(r, sites) for r in range(5)] == [cyclic(5, order="random", seed=3).order(r, sites)
                                                         for r in range(5)]


def test_a_failed_silent_or_unfit_site_is_passed_over_and_the_model_goes_on():
    """site-2 fails, then sends NaN, then a wrong shape: the model skips it each time, with the reason logged."""
    # Prepare
    answers = iter([
        SiteFailure("site-2", "out of memory"),
        TaskResult("site-2", {"w": np.full(3, np.nan)}, 1),
        TaskResult("site-2", {"w": np.zeros(4)}, 1),
    ])

    def flaky(task: Task) -> TaskResult | SiteFailure:
        return next(answers)

    fed = three_sites(**{"site-2": flaky})
    # Execute
    final = cyclic(3, min_sites=2).run(fed, {"w": X0.copy()})
    # Assert
    np.testing.assert_allclose(final["w"], reference([["site-1", "site-3"]] * 3), rtol=0, atol=1e-12)
    assert "round 1: site-2 failed: out of memory; the model goes on unchanged" in fed.lines
    assert "round 2: site-2 sent an unusable model: site-2: tensor 'w' holds NaN or infinite values; the model " \
           "goes on unchanged" in fed.lines
    assert "round 3: site-2 sent an unusable model: site-2: tensor 'w' has shape (4,), but the model has (3,); the " \
           "model goes on unchanged" in fed.lines


def test_too_few_sites_training_the_model_fails_the_round():
    """With min_sites 2 and two sites failing, round 0 fails the job with a message saying how many trained."""
    # Prepare
    fed = three_sites(**{"site-1": lambda t: SiteFailure("site-1", "x"), "site-2": lambda t: None})
    # Execute / Assert
    with pytest.raises(WorkflowError, match="round 1: 1 of the 2 required sites trained the model"):
        cyclic(1, min_sites=2, site_timeout_s=1).run(fed, {"w": X0.copy()})
    assert "round 1: no answer from site-2 within 1 s; the model goes on unchanged" in fed.lines


def test_a_resumed_run_with_its_state_restored_ends_as_an_uninterrupted_one():
    """random_without_same_in_a_row depends on the last site before: resumed with it, the same final model."""
    # Prepare
    args = {"order": "random_without_same_in_a_row", "seed": 11}
    whole, first, rest = three_sites(), three_sites(), three_sites()
    cyclic(6, **args).run(whole, {"w": X0.copy()})
    cyclic(3, **args).run(first, {"w": X0.copy()})
    resumed = cyclic(6, **args)
    # Execute
    resumed.restore(first.states["round-2"])
    final = resumed.run(rest, first.models["round-2"], start_round=3)
    # Assert
    np.testing.assert_array_equal(final["w"], whole.models["final"]["w"])
    assert first.states["round-2"].values == {"last_site": first.tasks[-1][1][0]}
    with pytest.raises(WorkflowError, match="saved cyclic state is damaged"):
        resumed.restore(WorkflowState({"last_site": 3}))

