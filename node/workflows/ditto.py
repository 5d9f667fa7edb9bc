"""Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through Personalization", Algorithm 1): FedAvg
trains the global model w while each site keeps a personal model v_k of its own, regularized toward the global one:

    a site receives w^t; it trains w^t on its data as in FedAvg (its answer, averaged by the server), and
    takes s steps  v_k <- v_k - lr * (grad F_k(v_k) + lambda * (v_k - w^t))  on its personal model,
    which never leaves the site (initialised to the first global model it receives).

lambda (`ditto_lambda`) travels in each training task's meta (`model.meta["ditto_lambda"]`); 0 makes each personal
model purely local, a large lambda pulls it onto the global one. Each site answers with its metrics of both models,
named `global_<metric>` (the global model it received, on its data) and `personal_<metric>` (its personal model
after the round); both are recorded per site and round, and the last round's are the report `ditto`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, Field

from flctl.node.jobs.tasks import Params, TaskResult
from flctl.node.workflows.base import Federation, WorkflowArgs
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs

if TYPE_CHECKING:
    from flctl.node.workflows.aggregation import WeightedSum
    from flctl.node.workflows.secure_sum import SecureSum

REPORT = "ditto"
LAMBDA = "ditto_lambda"


class DittoArgs(FedAvgArgs):
    """`workflow.args` of a `ditto` job: those of `fedavg`, and lambda."""

    ditto_lambda: float = Field(validation_alias=AliasChoices("ditto_lambda", "lambda"), ge=0,
                                description="lambda, the weight of the personal model's pull toward the global one, "
                                            "(lambda/2)·‖v − w‖²; also `lambda`")

    secure_modes: ClassVar[frozenset[str]] = frozenset()  # not tried with encryption or masking yet


class Ditto(FedAvg):
    """FedAvg of the global model, with lambda in every task and both models' metrics collected per site."""

    type_name: ClassVar[str] = "ditto"
    Args: ClassVar[type[WorkflowArgs]] = DittoArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.ditto_lambda = float(getattr(args, LAMBDA))
        self.latest: dict[str, dict[str, dict[str, float]]] = {}  # site -> global/personal -> metric -> value
        self.unreported: list[str] = []  # sites that sent no personal_<metric>, said once in the log at the end

    def task_meta(self) -> dict[str, Any]:
        return {**super().task_meta(), LAMBDA: self.ditto_lambda}

    def add_answer(self, total: WeightedSum | SecureSum, answer: TaskResult, base: Callable[[], Params]) -> None:
        super().add_answer(total, answer, base)
        split: dict[str, dict[str, float]] = {"global": {}, "personal": {}}
        for name, value in answer.metrics.items():
            for kind, values in split.items():
                if name.startswith(kind + "_"):
                    values[name[len(kind) + 1:]] = value
        self.latest[answer.site] = split
        if not split["personal"] and answer.site not in self.unreported:
            self.unreported.append(answer.site)

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        model = super().run(fed, initial, start_round)
        for site in self.unreported:
            fed.log(f"ditto: {site} sent no personal_<metric>: its script does not report its personal model")
        fed.save_report(REPORT, {"lambda": self.ditto_lambda, "rounds": self.settings.rounds,
                                 "sites": dict(sorted(self.latest.items()))})
        return model
