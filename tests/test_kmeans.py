"""Federated k-means against scikit-learn's KMeans on the pooled points, from the same initial centres (n_init=1,
Lloyd): the example job in the simulator, and the workflow's steps on fixed inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flctl.node.frameworks.kmeans import new_centers, site_sums
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.tasks import TaskResult
from flctl.node.simulator.runtime import simulate
from flctl.node.wire import tensors
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.kmeans import KMeans, KMeansArgs

from .conftest import ROOT
from .test_example_jobs import load_script
from .test_fedavg import FakeFederation

sklearn_cluster = pytest.importorskip("sklearn.cluster",
                                      reason="needs the frameworks extra: bash scripts/setup.sh --all")
JOB = ROOT / "playbooks" / "jobs" / "sklearn" / "kmeans.yml"
SITES = ["site-1", "site-2", "site-3"]


def pooled_kmeans(points: np.ndarray, start: np.ndarray, max_iter: int) -> np.ndarray:
    km = sklearn_cluster.KMeans(len(start), init=start, n_init=1, max_iter=max_iter, tol=0.0, algorithm="lloyd")
    return km.fit(points).cluster_centers_


def test_the_example_job_gives_sklearns_centres_on_the_pooled_points(tmp_path, monkeypatch):
    """3 simulated sites, k-means++ start from the sites' local centres: the final centres are KMeans' on the pooled
    points from the start the report names, to 1e-9."""
    # Prepare
    data = load_script(JOB.parent / "app" / "tabular.py", monkeypatch)
    pooled = np.concatenate([data.blobs(site) for site in SITES])
    # Execute
    result = simulate(load_job(JOB), SITES, tmp_path / "ws", 1)
    # Assert
    assert result.status == "FINISHED", result.error
    report = json.loads((result.job_dir / "reports" / "kmeans.json").read_text())
    final = tensors.decode((result.job_dir / "models" / "final.safetensors").read_bytes())["centers"]
    expected = pooled_kmeans(pooled, np.array(report["initial_centers"]), 100)
    assert report["converged"] and report["iterations"] < 100
    np.testing.assert_allclose(final, expected, rtol=0, atol=1e-9)
    assert sum(report["cluster_sizes"]) == len(pooled)


def lloyd_site(points: np.ndarray):
    def answer(task):
        sums, counts, inertia = site_sums(points, task.params["centers"])
        return TaskResult("", {"sums": sums, "counts": counts}, len(points), {"inertia": inertia})
    return answer


def test_each_round_is_one_lloyd_iteration_over_the_pooled_points():
    """Given initial centres and 2 rounds: sklearn's centres after max_iter=2, exactly (numpy reference too)."""
    # Prepare
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((50, 3)) + shift for shift in (0.0, 3.0, -3.0)]
    start = np.array([[0.5, 0.5, 0.5], [2.0, 2.0, 2.0], [-2.0, -1.0, -2.0]])
    fed = FakeFederation({f"s{i}": _named(f"s{i}", lloyd_site(p)) for i, p in enumerate(parts)})
    pooled = np.concatenate(parts)
    reference = start
    for _ in range(2):
        labels = ((pooled[:, None, :] - reference[None]) ** 2).sum(axis=2).argmin(axis=1)
        reference = np.array([pooled[labels == j].mean(axis=0) for j in range(3)])
    # Execute
    final = KMeans(KMeansArgs(clusters=3, rounds=2)).run(fed, {"centers": start})
    # Assert
    np.testing.assert_allclose(final["centers"], reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(final["centers"], pooled_kmeans(pooled, start, 2), rtol=0, atol=1e-9)
    assert list(fed.models) == ["round-0", "round-1", "final"]


def _named(site: str, answer):
    def named(task):
        result = answer(task)
        result.site = site
        return result
    return named


def test_a_centre_no_point_is_nearest_to_stays_and_bad_answers_fail_the_job():
    """An empty cluster keeps its centre; a site answering with no sums fails the round, naming it."""
    # Prepare
    centers = np.array([[0.0], [100.0]])
    sums, counts, _ = site_sums(np.array([[1.0], [3.0]]), centers)
    fed = FakeFederation({"a": lambda task: TaskResult("a", {"w": np.zeros(1)}, 1)})
    # Execute
    moved = new_centers(centers, sums, counts)
    # Assert
    np.testing.assert_array_equal(moved, [[2.0], [100.0]])
    with pytest.raises(WorkflowError, match=r"a .*no 'sums' and 'counts'"):
        KMeans(KMeansArgs(clusters=2, rounds=1)).run(fed, {"centers": centers})
    assert WORKFLOWS["kmeans"] is KMeans
    with pytest.raises(ValueError, match="clusters"):
        KMeans.parse_args({"rounds": 3})


def test_a_restarted_job_resumes_to_the_same_centres():
    """6 rounds straight, and 2 then a restart from round 2's checkpoint: the same centres, exactly."""
    # Prepare
    rng = np.random.default_rng(8)
    parts = [rng.standard_normal((40, 2)) + shift for shift in (0.0, 4.0)]
    start = np.array([[0.1, 0.0], [3.0, 3.0], [1.0, 4.0]])

    def fed():
        return FakeFederation({f"s{i}": _named(f"s{i}", lloyd_site(p)) for i, p in enumerate(parts)})
    first = fed()
    # Execute
    straight = KMeans(KMeansArgs(clusters=3, rounds=6)).run(fed(), {"centers": start})
    KMeans(KMeansArgs(clusters=3, rounds=2)).run(first, {"centers": start})
    resumed = KMeans(KMeansArgs(clusters=3, rounds=6)).run(fed(), first.models["round-1"], start_round=2)
    # Assert
    np.testing.assert_array_equal(resumed["centers"], straight["centers"])
