"""Split learning over vertically partitioned data (NVIDIA FLARE's split-learning example, `SplitNN`): sites hold
different feature columns of the same rows (the intersection a `psi` job found; job.yml's `psi_job` hands it to
each site), one of them also the labels. Each site runs a bottom model over its columns; the label site runs the
top model over all bottom outputs. The server relays, per batch, the feature sites' activations to the label site
and the label site's gradients back (`split_forward`, `split_step`; `fl.split_nn` answers them at the site).

Rows are numbered by their place in the intersection; the server chooses them (a seeded split into training and
test rows, batches shuffled each epoch from the seed and the epoch) and never sees an ID, a feature or a label,
only activations, gradients and each batch's loss and accuracy. Every model is updated with a batch's gradient
before the next batch, so the result is that of the same model trained on the joined table with the same batches.

After each epoch the test rows are evaluated; the epoch's training loss and the test loss and accuracy are that
epoch's metrics, and the report `split_nn` holds them all. The models stay at the sites. A site that fails or
stays silent fails the job: split learning cannot go on without any part of the model.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from pydantic import Field

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "split_nn"
ACTIVATIONS, GRADIENT = "activations", "gradient"


class SplitNNArgs(WorkflowArgs):
    """`workflow.args` of a `split_nn` job."""

    label_site: str = Field(description="The site holding the labels and the top model")
    epochs: int = Field(ge=1, description="Passes over the training rows")
    batch_size: int = Field(64, ge=1, description="Rows per batch")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the rows held out for evaluation")
    seed: int = Field(0, description="Seed of the test split and of each epoch's batch order")
    site_timeout_s: float = Field(120.0, gt=0, description="Seconds each step waits for a site's answer")

    @property
    def rounds(self) -> int:
        """An epoch is a round: what `flctl job show` and `--watch` count."""
        return self.epochs


def split_rows(rows: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The training and the test rows of `rows` (a seeded shuffle, the test rows first; both at least one row)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(rows).tolist()
    test = min(rows - 1, max(1, round(rows * test_fraction)))
    return sorted(order[test:]), sorted(order[:test])


def batches(train: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Epoch `epoch`'s batches of the training rows: shuffled from `seed` and the epoch, the last one shorter."""
    import numpy as np

    order = [train[i] for i in np.random.default_rng([seed, epoch]).permutation(len(train))]
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


class SplitNN(Workflow):
    """Relay activations and gradients between feature sites and the label site, batch by batch."""

    type_name: ClassVar[str] = "split_nn"
    Args: ClassVar[type[WorkflowArgs]] = SplitNNArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 2) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(SplitNNArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        label = self.settings.label_site
        sites = fed.sites()
        if label not in sites:
            raise WorkflowError(f"the label site {label!r} (workflow.args.label_site) is not among the job's sites "
                                f"({', '.join(sites)})")
        features = [site for site in sites if site != label]
        if not features:
            raise WorkflowError("split learning needs at least one site besides the label site")
        rows = self._setup(fed, label, features)
        train, test = split_rows(rows, self.settings.test_fraction, self.settings.seed)
        history: list[dict[str, float]] = []
        pending: dict[str, Any] = {}
        for epoch in range(start_round, self.settings.epochs):
            losses = []
            for batch in batches(train, self.settings.batch_size, self.settings.seed, epoch):
                metrics, pending = self._batch(fed, epoch, label, features, batch, pending, "train")
                losses.append((metrics.get("loss", float("nan")), len(batch)))
            tested, pending = self._batch(fed, epoch, label, features, test, pending, "eval")
            epoch_metrics = {"train_loss": sum(loss * n for loss, n in losses) / len(train),
                             "test_loss": tested.get("loss", float("nan")),
                             "test_accuracy": tested.get("accuracy", float("nan"))}
            history.append({"epoch": float(epoch), **epoch_metrics})
            fed.record_round(epoch, {label: epoch_metrics})
            fed.log(f"split_nn epoch {epoch} ({epoch + 1} of {self.settings.epochs}): train loss "
                    f"{epoch_metrics['train_loss']:.4f}, test loss {epoch_metrics['test_loss']:.4f}, test accuracy "
                    f"{epoch_metrics['test_accuracy']:.4f}")
        fed.save_report(REPORT, {"label_site": label, "feature_sites": features, "rows": rows,
                                 "train_rows": len(train), "test_rows": len(test), "epochs": history})
        return {}

    def _setup(self, fed: Federation, label: str, features: list[str]) -> int:
        """Every site's number of rows; they must agree (they all hold the same intersection)."""
        counts: dict[str, Any] = {}
        for site in [label, *features]:
            kind = TaskKind.SPLIT_STEP if site == label else TaskKind.SPLIT_FORWARD
            answer = self._one(fed, Task(kind, 0, {}, meta={"phase": "setup", "feature_sites": features}), site)
            counts[site] = answer.meta.get("rows")
        rows = counts[label]
        if len(set(map(repr, counts.values()))) != 1 or not isinstance(rows, int) or rows < 2:
            listed = ", ".join(f"{site} {rows!r}" for site, rows in counts.items())
            raise WorkflowError(f"the sites must hold the same rows (at least 2), but they have: {listed}; run "
                                "them over one psi job's intersection (job.yml psi_job)")
        return rows

    def _batch(self, fed: Federation, epoch: int, label: str, features: list[str], rows: list[int],
               pending: dict[str, Any], phase: str) -> tuple[dict[str, float], dict[str, Any]]:
        """One batch: each feature site applies its pending gradient and sends activations; the label site steps.
        The batch's metrics and the gradients the feature sites are to apply next."""
        meta = {"phase": phase, "rows": rows, "feature_sites": features}
        activations = {}
        for site in features:
            given = {GRADIENT: pending[site]} if site in pending else {}
            answer = self._one(fed, Task(TaskKind.SPLIT_FORWARD, epoch, given, meta=meta), site)
            value = answer.params.get(ACTIVATIONS)
            if value is None or value.ndim != 2 or value.shape[0] != len(rows):
                shape = None if value is None else tuple(value.shape)
                raise WorkflowError(f"epoch {epoch}: {site} sent activations of shape {shape} for {len(rows)} rows")
            activations[site] = value
        step = self._one(fed, Task(TaskKind.SPLIT_STEP, epoch, activations, meta=meta), label)
        if phase != "train":
            return dict(step.metrics), {}
        for site in features:
            gradient = step.params.get(site)
            if gradient is None or gradient.shape != activations[site].shape:
                raise WorkflowError(f"epoch {epoch}: {label} sent no gradient of shape "
                                    f"{tuple(activations[site].shape)} for {site}'s activations")
        return dict(step.metrics), {site: step.params[site] for site in features}

    def _one(self, fed: Federation, task: Task, site: str) -> TaskResult:
        answers = fed.send(task, [site], self.settings.site_timeout_s)
        try:
            for answer in answers:
                if answer.site != site:
                    continue
                if isinstance(answer, SiteFailure):
                    raise WorkflowError(f"{site} failed at {task.kind.value} (epoch {task.round}): {answer.reason}")
                return answer
        finally:
            close = getattr(answers, "close", None)
            if close is not None:
                close()
        raise WorkflowError(f"{site} did not answer {task.kind.value} (epoch {task.round}) within "
                            f"{self.settings.site_timeout_s:g} s")
