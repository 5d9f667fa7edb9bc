"""Random forests pooled across sites (NVIDIA FLARE's sklearn random-forest example, in one round): every site grows
a forest on its own rows and sends its trees (`flctl.client.forest.serve`); the server's model is all of them
together (`flctl.node.frameworks.forest`), which every site then evaluates on its rows.

    workflow:
      type: forest
      args: {evaluate: true}

The model (`models/final.safetensors`) holds every tree as arrays (`tree/<i>/left`, `right`, `feature`,
`threshold`, `value`) and `classes`; the report `forest` says how many trees came from each site and each site's
figures of the pooled forest (`val_accuracy`, `val_auc`).
"""

from __future__ import annotations

from typing import ClassVar, cast

from pydantic import Field

from flctl.node.jobs.tasks import Params, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "forest"


class ForestArgs(WorkflowArgs):
    """`workflow.args` of a `forest` job."""

    evaluate: bool = Field(True, description="Evaluate the pooled forest at every site afterwards")
    timeout_s: float = Field(600.0, gt=0, description="Seconds each step waits for every site")

    @property
    def rounds(self) -> int:
        """One round (what the simulator and the console show)."""
        return 1


class Forest(Workflow):
    """One round: every site's trees, pooled into one forest."""

    type_name: ClassVar[str] = "forest"
    Args: ClassVar[type[WorkflowArgs]] = ForestArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(ForestArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        from flctl.node.frameworks.forest import pool, tree_count
        from flctl.node.workflows.fedavg import evaluate
        from flctl.node.workflows.gather import gather

        sites = fed.sites()
        if len(sites) < self.min_sites:
            raise WorkflowError(f"{self.min_sites} sites are required but the job has {len(sites)}")

        def fits(answer: TaskResult) -> None:
            if "classes" not in answer.params:
                raise ValueError("no forest (classes and tree/<i>/...): its script must answer with "
                                 "flctl.client.forest.serve")
            if not tree_count(answer.params):
                raise ValueError("a forest of no trees")

        task = Task(TaskKind.TRAIN, 0, {}, meta={"forest": "train", "rounds": 1})
        answers = gather(fed, task, sites, self.settings.timeout_s, "forest", fits)
        order = sorted(answers)
        try:
            model = pool([answers[site].params for site in order])
        except ValueError as exc:
            raise WorkflowError(f"the sites' forests do not pool: {exc}") from None
        fed.save_model("round-0", model)
        fed.save_model("final", model, saved_as="round-0")
        counts = {site: tree_count(answers[site].params) for site in order}
        metrics = {site: dict(answers[site].metrics) for site in order}
        fed.log(f"forest: {tree_count(model)} trees pooled from {len(order)} sites")
        if self.settings.evaluate:
            for site, values in evaluate(fed, 0, model, "final", sites, self.settings.timeout_s).items():
                metrics[site] = {**metrics.get(site, {}), **values}
        fed.record_round(0, metrics)
        fed.save_report(REPORT, {"trees": tree_count(model), "trees_per_site": counts,
                                 "classes": model["classes"].tolist(), "sites": metrics})
        return model
