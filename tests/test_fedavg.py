"""FedAvg against an in-memory federation whose sites are plain functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs

# A site answers a task with a result or a failure, or None to stay silent until the timeout.
Site = Callable[[Task], TaskResult | SiteFailure | None]


class FakeFederation:
    """Runs each site's function in turn and records everything the workflow stores and logs."""

    job_id = "job-1"

    def __init__(self, sites: dict[str, Site]) -> None:
        self.site_fns = sites
        self.tasks: list[tuple[Task, list[str], float]] = []
        self.models: dict[str, Params] = {}
        self.rounds: dict[int, dict[str, dict[str, float]]] = {}
        self.lines: list[str] = []
        self.reports: dict[str, dict[str, object]] = {}
        self.files: dict[str, bytes] = {}

    def sites(self) -> list[str]:
        return list(self.site_fns)

    def send(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        self.tasks.append((task, list(sites), timeout_s))
        for site in sites:
            answer = self.site_fns[site](task)
            if answer is not None:
                yield answer

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        self.models[name] = params
        if saved_as:
            assert params is self.models[saved_as], f"{name} is not the model saved as {saved_as}"

    def load_model(self, name: str) -> Params:
        return self.models[name]

    def save_report(self, name: str, report: dict[str, object]) -> None:
        self.reports[name] = report

    def job_file(self, path: str) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(f"the job has no file {path}")
        return self.files[path]

    def record_round(self, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        self.rounds[round_no] = metrics

    def log(self, message: str) -> None:
        self.lines.append(message)


def adds(site: str, step: float, examples: int) -> Site:
    """A site whose training adds `step` to every weight (starting from zeros when the model is empty)."""

    def train(task: Task) -> TaskResult:
        w = task.params.get("w", np.zeros(2, np.float32))
        return TaskResult(site, {"w": (w + step).astype(np.float32)}, examples, {"loss": step})

    return train


def fails(site: str, reason: str) -> Site:
    return lambda task: SiteFailure(site, reason)


def silent(task: Task) -> None:
    return None


def fedavg(rounds: int, min_sites: int = 1, timeout: float = 60) -> FedAvg:
    return FedAvg(FedAvgArgs(rounds=rounds, round_timeout_s=timeout), min_sites)


def test_registered_as_fedavg():
    """job.yml's `type: fedavg` finds this class, and its Args validate rounds."""
    # Prepare / Execute
    cls = WORKFLOWS["fedavg"]
    # Assert
    assert cls is FedAvg
    assert cls.parse_args({"rounds": 2}) == FedAvgArgs(rounds=2, round_timeout_s=300.0)


def test_exact_weighted_average_over_three_rounds():
    """Each round's model is the weighted mean of the sites' models; round 0 starts from an empty model."""
    # Prepare
    fed = FakeFederation({"site-1": adds("site-1", 1.0, 10), "site-2": adds("site-2", 5.0, 30)})
    # Execute
    final = fedavg(rounds=3).run(fed, None)
    # Assert: each round adds (1*10 + 5*30) / 40 = 4
    assert final["w"].tolist() == [12.0, 12.0]
    assert final["w"].dtype == np.float32
    assert fed.tasks[0][0].params == {}
    assert [task.round for task, _, _ in fed.tasks] == [0, 1, 2]
    assert fed.tasks[1][0].params["w"].tolist() == [4.0, 4.0]
    assert all(task.kind == "train" and task.meta == {"rounds": 3} for task, _, _ in fed.tasks)
    assert fed.tasks[0][1:] == (["site-1", "site-2"], 60)


def test_checkpoints_metrics_and_log():
    """Every round saves `round-N` and records per-site metrics; the end saves `final`."""
    # Prepare
    fed = FakeFederation({"site-1": adds("site-1", 1.0, 10), "site-2": adds("site-2", 5.0, 30)})
    # Execute
    fedavg(rounds=2).run(fed, {"w": np.zeros(2, np.float32)})
    # Assert
    assert list(fed.models) == ["round-0", "round-1", "final"]
    assert fed.models["round-0"]["w"].tolist() == [4.0, 4.0]
    assert fed.rounds[1] == {"site-1": {"loss": 1.0}, "site-2": {"loss": 5.0}}
    assert fed.lines == [
        "round 1 of 2: 2 of 2 sites answered, 40 examples, loss 4",
        "round 2 of 2: 2 of 2 sites answered, 40 examples, loss 4",
    ]


def test_resume_from_a_later_round():
    """Restarted at round 2 with the round-1 checkpoint, only the remaining round runs."""
    # Prepare
    fed = FakeFederation({"site-1": adds("site-1", 1.0, 1)})
    # Execute
    final = fedavg(rounds=3).run(fed, {"w": np.array([7.0, 7.0], np.float32)}, start_round=2)
    # Assert
    assert [task.round for task, _, _ in fed.tasks] == [2]
    assert final["w"].tolist() == [8.0, 8.0]
    assert list(fed.models) == ["round-2", "final"]


def test_a_silent_site_is_tolerated_when_enough_answer():
    """With min_sites 2 of 3, one site that never answers does not stop the round."""
    # Prepare
    fed = FakeFederation({"a": adds("a", 2.0, 1), "b": silent, "c": adds("c", 4.0, 1)})
    # Execute
    final = fedavg(rounds=1, min_sites=2).run(fed, None)
    # Assert
    assert final["w"].tolist() == [3.0, 3.0]
    assert list(fed.rounds[0]) == ["a", "c"]


def test_too_few_answers_within_the_timeout_fail_the_job():
    """One of two required sites answering ends the job with a message naming the silent one."""
    # Prepare
    fed = FakeFederation({"site-1": adds("site-1", 1.0, 1), "site-2": silent})
    # Execute
    with pytest.raises(WorkflowError) as info:
        fedavg(rounds=3, min_sites=2).run(fed, None)
    # Assert
    assert str(info.value) == "round 1: 1 of 2 required sites answered within 60 s; no answer from site-2"
    assert fed.models == {}


def test_failures_end_the_round_as_soon_as_min_sites_is_out_of_reach():
    """Two failures out of three with min_sites 2: the workflow stops at the first one that makes it hopeless."""
    # Prepare
    asked: list[str] = []

    def tracked(site: Site, name: str) -> Site:
        def answer(task: Task) -> TaskResult | SiteFailure | None:
            asked.append(name)
            return site(task)
        return answer

    fed = FakeFederation({
        "a": tracked(fails("a", "train.py exited with code 1"), "a"),
        "b": tracked(fails("b", "went offline"), "b"),
        "c": tracked(adds("c", 1.0, 1), "c"),
    })
    # Execute
    with pytest.raises(WorkflowError) as info:
        fedavg(rounds=1, min_sites=2).run(fed, None)
    # Assert
    assert str(info.value) == ("round 1: 2 of 3 sites failed, so fewer than the 2 required can answer; "
                               "failed: a (train.py exited with code 1), b (went offline)")
    assert asked == ["a", "b"]


def test_a_model_that_does_not_fit_counts_as_a_failure():
    """A site sending a wrongly shaped model fails; the others' average stands."""
    # Prepare
    def wrong(task: Task) -> TaskResult:
        return TaskResult("b", {"w": np.zeros(5, np.float32)}, 1)

    fed = FakeFederation({"a": adds("a", 1.0, 1), "b": wrong, "c": adds("c", 3.0, 1)})
    # Execute
    final = fedavg(rounds=1, min_sites=2).run(fed, {"w": np.zeros(2, np.float32)})
    # Assert
    assert final["w"].tolist() == [2.0, 2.0]
    assert "round 1: b failed: sent an unusable model: b: tensor 'w' has shape (5,), but the global model has (2,)" \
        in fed.lines


def test_fewer_sites_than_min_sites_fails_before_sending():
    """A federation smaller than min_sites fails at once, sending nothing."""
    # Prepare
    fed = FakeFederation({"a": adds("a", 1.0, 1)})
    # Execute
    with pytest.raises(WorkflowError) as info:
        fedavg(rounds=1, min_sites=2).run(fed, None)
    # Assert
    assert str(info.value) == "round 1: 2 sites are required but the job has 1"
    assert fed.tasks == []


@pytest.mark.parametrize(("raw", "field"), [({}, "rounds"), ({"rounds": 0}, "rounds"),
                                            ({"rounds": 1, "round_timeout_s": 0}, "round_timeout_s"),
                                            ({"rounds": 1, "min_sites": 2}, "min_sites")])
def test_bad_args_are_refused(raw, field):
    """Missing or out-of-range args, and unknown keys (min_sites lives in job.yml), are refused."""
    # Prepare / Execute
    with pytest.raises(ValueError) as info:
        FedAvg.parse_args(raw)
    # Assert
    assert info.value.errors()[0]["loc"] == (field,)


def test_each_round_after_the_first_sends_the_checkpoint_it_saved():
    """The task of round N names round N-1's checkpoint (the server links that file instead of writing the model
    again), and holds exactly the params that were saved under that name."""
    fed = FakeFederation({"a": adds("a", 1.0, 1)})

    fedavg(rounds=3).run(fed, None)

    assert [task.saved_as for task, _, _ in fed.tasks] == ["", "round-0", "round-1"]
    for task, _, _ in fed.tasks[1:]:
        assert task.params is fed.models[task.saved_as]
    assert fed.models["final"] is fed.models["round-2"]  # saved with saved_as="round-2" (checked by the fake)


def test_a_site_answering_nan_or_another_dtype_is_left_out_and_the_round_goes_on():
    """NaN, infinity or float64 for a float32 model: that site is left out with the reason, the others averaged."""
    # Prepare
    def sends(value: np.ndarray) -> Site:
        return lambda task: TaskResult("bad", {"w": value}, 1)

    for value, reason in ((np.array([np.nan, 1], np.float32), "holds NaN or infinite values"),
                          (np.array([np.inf, 1], np.float32), "holds NaN or infinite values"),
                          (np.zeros(2, np.float64), "has dtype float64, but the global model has float32")):
        fed = FakeFederation({"a": adds("a", 2.0, 1), "bad": sends(value)})
        # Execute
        final = fedavg(rounds=1, min_sites=1).run(fed, {"w": np.zeros(2, np.float32)})
        # Assert
        assert final["w"].tolist() == [2.0, 2.0]
        assert f"round 1: bad failed: sent an unusable model: bad: tensor 'w' {reason}" in fed.lines
        assert list(fed.rounds[0]) == ["a"]
