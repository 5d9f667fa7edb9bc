"""Federated k-means (NVIDIA FLARE's sklearn k-means example, with exact Lloyd iterations): the server holds the
centres, each round every site sends per-centre sums and counts of its points (`flctl.client.kmeans.serve`), the
server divides the totals. From the same initial centres this is scikit-learn's KMeans(n_init=1,
algorithm="lloyd") on the pooled data (`flctl.node.frameworks.kmeans`).

    workflow:
      type: kmeans
      args: {clusters: 3, rounds: 100, tol: 0.0}

Initial centres: the job's initial model (`initial_model:`, a tensor `centers` of shape (clusters, features)), or
else each site sends `clusters` centres of a local k-means (k-means++ then a few Lloyd iterations, never raw
points) with their sizes, and the server picks `clusters` of them by weighted k-means++ from `seed`. The model
(`models/final.safetensors`) is `centers`; the report `kmeans` says the iterations, whether it converged, the
cluster sizes and the inertia.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from pydantic import Field

from flctl.node.jobs.tasks import Params, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "kmeans"


class KMeansArgs(WorkflowArgs):
    """`workflow.args` of a `kmeans` job."""

    clusters: int = Field(ge=1, le=100_000, description="k, the number of clusters")
    rounds: int = Field(300, ge=1, description="The most Lloyd iterations (scikit-learn's max_iter)")
    tol: float = Field(0.0, ge=0, description="Stop once the centres moved by at most this much in all (sum of "
                                              "squared shifts); 0: only when no centre moves")
    seed: int = Field(0, description="Seed of the initial centres chosen by k-means++ (no initial model)")
    round_timeout_s: float = Field(300.0, gt=0, description="Seconds each step waits for every site")


class KMeans(Workflow):
    """Lloyd's iterations over every site's points, the sums added at the server."""

    type_name: ClassVar[str] = "kmeans"
    Args: ClassVar[type[WorkflowArgs]] = KMeansArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(KMeansArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        import numpy as np

        from flctl.node.frameworks.kmeans import new_centers

        sites = self._sites(fed)
        k = self.settings.clusters
        if initial and "centers" in initial:
            centers = np.asarray(initial["centers"], np.float64)
            if centers.ndim != 2 or centers.shape[0] != k:
                raise WorkflowError(f"the initial model's centers have shape {centers.shape}; ({k}, features) is "
                                    f"needed (clusters: {k})")
        elif initial:
            raise WorkflowError(f"the initial model has no tensor 'centers' (it has {', '.join(sorted(initial))})")
        else:
            centers = self._initial_centers(fed, sites)
        start = centers.copy()
        converged, counts, inertia, done = False, np.zeros(k), 0.0, start_round
        final: Params = {}
        for round_no in range(start_round, self.settings.rounds):
            sites = self._sites(fed)
            answers = _step(fed, round_no, centers, sites, self.settings.round_timeout_s)
            sums = sum((a.params["sums"] for a in answers.values()), np.zeros_like(centers))
            counts = sum((a.params["counts"] for a in answers.values()), np.zeros(k))
            inertia = sum(a.metrics.get("inertia", 0.0) for a in answers.values())
            moved = new_centers(centers, sums, counts)
            shift = float(((moved - centers) ** 2).sum())
            centers = moved
            done = round_no + 1
            final = {"centers": centers}
            self.checkpoint(fed, round_no, final)
            fed.record_round(round_no, {site: dict(a.metrics) for site, a in answers.items()})
            fed.log(f"round {round_no + 1}: {len(answers)} sites, {int(counts.sum())} points, inertia {inertia:.6g} "
                    f"(before the update), centre shift {shift:.3g}" +
                    (f", {int((counts == 0).sum())} empty clusters kept in place" if (counts == 0).any() else ""))
            if shift <= self.settings.tol:
                converged = True
                break
        if done == start_round:  # nothing left to run: the model it was resumed with
            final = {"centers": centers}
        fed.save_model("final", final, saved_as=f"round-{done - 1}" if done > start_round else "")
        report: dict[str, Any] = {"clusters": k, "iterations": done, "converged": converged,
                                  "cluster_sizes": [int(c) for c in counts], "inertia": inertia,
                                  "initial_centers": start.tolist()}
        fed.save_report(REPORT, report)
        fed.log(f"k-means: {'converged' if converged else 'stopped'} after {done} iterations")
        return final

    def _sites(self, fed: Federation) -> list[str]:
        sites = fed.sites()
        if len(sites) < self.min_sites:
            raise WorkflowError(f"{self.min_sites} sites are required but the job has {len(sites)}")
        return sites

    def _initial_centers(self, fed: Federation, sites: list[str]) -> Any:
        """k centres from the sites' local k-means centres, weighted by their sizes, by k-means++."""
        import numpy as np

        from flctl.node.frameworks.kmeans import kmeans_plus_plus
        from flctl.node.workflows.gather import gather

        k = self.settings.clusters
        task = Task(TaskKind.TRAIN, 0, {}, meta={"kmeans": "init", "clusters": k, "seed": self.settings.seed})
        answers = gather(fed, task, sites, self.settings.round_timeout_s, "k-means initial centres", _init_fits)
        points = np.concatenate([np.asarray(a.params["centers"], np.float64) for a in answers.values()])
        sizes = np.concatenate([np.asarray(a.params["counts"], np.float64) for a in answers.values()])
        widths = {np.shape(a.params["centers"])[1] for a in answers.values()}
        if len(widths) > 1:
            raise WorkflowError(f"the sites' points have different numbers of features: {sorted(widths)}")
        if int((sizes > 0).sum()) < k:
            raise WorkflowError(f"the sites hold fewer than {k} distinct groups of points to start {k} clusters from")
        centers = kmeans_plus_plus(points[sizes > 0], sizes[sizes > 0], k, self.settings.seed)
        fed.log(f"k-means: {k} initial centres chosen by k-means++ from {int((sizes > 0).sum())} site centres")
        return centers


def _step(fed: Federation, round_no: int, centers: Any, sites: list[str], timeout_s: float) -> dict[str, TaskResult]:
    import numpy as np

    from flctl.node.workflows.gather import gather

    k, d = centers.shape

    def fits(answer: TaskResult) -> None:
        sums, counts = answer.params.get("sums"), answer.params.get("counts")
        if sums is None or counts is None:
            raise ValueError("no 'sums' and 'counts' (its script must answer k-means tasks with "
                             "flctl.client.kmeans.serve)")
        if np.shape(sums) != (k, d) or np.shape(counts) != (k,):
            raise ValueError(f"sums {np.shape(sums)} and counts {np.shape(counts)}, not ({k}, {d}) and ({k},)")
        if not (np.isfinite(sums).all() and np.isfinite(counts).all() and (np.asarray(counts) >= 0).all()):
            raise ValueError("sums or counts that are not finite, or negative counts")

    task = Task(TaskKind.TRAIN, round_no, {"centers": centers}, meta={"kmeans": "step"})
    return gather(fed, task, sites, timeout_s, f"round {round_no + 1}", fits)


def _init_fits(answer: TaskResult) -> None:
    import numpy as np

    centers, counts = answer.params.get("centers"), answer.params.get("counts")
    if centers is None or counts is None or np.ndim(centers) != 2 or np.shape(counts) != (len(centers),):
        raise ValueError("no local 'centers' (k, features) and 'counts' (k,) (its script must answer k-means tasks "
                         "with flctl.client.kmeans.serve)")
    if not (np.isfinite(centers).all() and np.isfinite(counts).all()):
        raise ValueError("centres or counts that are not finite")
