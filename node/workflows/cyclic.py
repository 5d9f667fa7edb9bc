"""Cyclic weight transfer (NVIDIA FLARE's `CyclicController`): the model goes from site to site, each training it
in turn, with no averaging. A round is one pass over the sites, in a fixed order, a list the job gives, or an
order shuffled each round (from `seed` and the round, so a resumed job draws the same orders).

A site that fails or stays silent for `site_timeout_s` is passed over: the model goes on unchanged to the next
one. A site's answer must have the names, shapes and dtypes of the model it was sent, all finite; otherwise it is
passed over too, with the reason in the job's log. A round needs `min_sites` answers. The state saved with
each round is the last site of that round's order (`random_without_same_in_a_row` starts the next round with
another site).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import ClassVar, Literal, cast

from pydantic import Field

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError
from flctl.node.workflows.state import WorkflowState

Order = Literal["fixed", "random", "random_without_same_in_a_row"]


class CyclicArgs(WorkflowArgs):
    """`workflow.args` of a `cyclic` job."""

    rounds: int = Field(ge=1, description="How many passes over the sites")
    order: Order | list[str] = Field(
        "fixed", description="fixed (the job's sites in order), random (shuffled each round), "
        "random_without_same_in_a_row (shuffled, never the same site twice in a row), or a list of site names")
    site_timeout_s: float = Field(300.0, gt=0, description="Seconds a site's turn waits for its answer")
    seed: int = Field(0, description="Seed of the shuffled orders (each round's order comes from it and the round)")


class Cyclic(Workflow):
    """Send the model to one site at a time; each site's model is the next one's starting point."""

    type_name: ClassVar[str] = "cyclic"
    Args: ClassVar[type[WorkflowArgs]] = CyclicArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(CyclicArgs, args)  # checked by Workflow.__init__
        self.last_site = ""  # the last site of the last round's order

    def order(self, round_no: int, sites: list[str]) -> list[str]:
        """The sites of round `round_no`, in the order the model visits them."""
        wanted = self.settings.order
        if isinstance(wanted, list):
            return [site for site in wanted if site in sites]
        if wanted == "fixed":
            return list(sites)
        order = sorted(sites)
        random.Random(f"{self.settings.seed}:{round_no}").shuffle(order)
        if wanted == "random_without_same_in_a_row" and len(order) > 1 and order[0] == self.last_site:
            order[0], order[1] = order[1], order[0]
        return order

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        model: Params = dict(initial) if initial is not None else {}
        saved = ""
        for round_no in range(start_round, self.settings.rounds):
            order = self.order(round_no, fed.sites())
            if isinstance(self.settings.order, list):
                missing = [site for site in self.settings.order if site not in order]
                if missing:
                    fed.log(f"round {round_no + 1}: {', '.join(missing)} in the order but not in the job; passed over")
            if len(order) < self.min_sites:
                raise WorkflowError(f"round {round_no + 1}: {self.min_sites} sites are required but the order has "
                                    f"{len(order)}")
            answered: dict[str, dict[str, float]] = {}
            for position, site in enumerate(order):
                task = Task(TaskKind.TRAIN, round_no, model, meta={"rounds": self.settings.rounds, "order": order,
                                                             "position": position}, saved_as=saved)
                answers = fed.send(task, [site], self.settings.site_timeout_s)
                try:
                    got = self._turn(fed, round_no, site, model, answers)
                finally:  # the turn is over: the federation may drop what it holds for the task
                    close = getattr(answers, "close", None)
                    if close is not None:
                        close()
                saved = ""
                if got is not None:
                    model = dict(got.params)
                    answered[site] = dict(got.metrics)
            if len(answered) < self.min_sites:
                raise WorkflowError(f"round {round_no + 1}: {len(answered)} of the {self.min_sites} required sites "
                                    "trained the model")
            self.last_site = order[-1]
            self.checkpoint(fed, round_no, model)
            fed.record_round(round_no, answered)
            fed.log(f"round {round_no + 1} of {self.settings.rounds}: the model went through "
                    f"{' -> '.join(site for site in order if site in answered)}")
            saved = f"round-{round_no}"
        fed.save_model("final", model, saved_as=saved)
        return model

    def _turn(self, fed: Federation, round_no: int, site: str, model: Params,
              answers: Iterable[TaskResult | SiteFailure]) -> TaskResult | None:
        """The site's answer when it is usable; None (and a line in the log) when it failed, was silent or sent a
        model that does not fit."""
        from flctl.node.workflows.aggregation import WeightedSum, full_params

        for answer in answers:
            if answer.site != site:
                fed.log(f"round {round_no + 1}: ignored an unexpected answer from {answer.site}")
                continue
            if isinstance(answer, SiteFailure):
                fed.log(f"round {round_no + 1}: {site} failed: {answer.reason}; the model goes on unchanged")
                return None
            try:  # the same checks as every sum of models: names, shapes, dtypes, finite values
                params = full_params(answer.params, answer.meta.get(PARAMS_TYPE, "full"), lambda: model)
                WeightedSum(like=model or None, like_name="the model").check(params, site)
            except ValueError as exc:
                fed.log(f"round {round_no + 1}: {site} sent an unusable model: {exc}; the model goes on unchanged")
                return None
            return TaskResult(answer.site, params, answer.num_examples, answer.metrics, answer.meta)
        fed.log(f"round {round_no + 1}: no answer from {site} within {self.settings.site_timeout_s:g} s; "
                "the model goes on unchanged")
        return None

    def state(self) -> WorkflowState:
        return WorkflowState({"last_site": self.last_site})

    def restore(self, state: WorkflowState) -> None:
        last = state.values.get("last_site")
        if not isinstance(last, str):
            raise WorkflowError(f"the saved cyclic state is damaged (last_site {last!r})")
        self.last_site = last

