"""Swarm learning (NVIDIA FLARE's client-controlled swarm): each round the sites train, and one site, not the
server, aggregates their models. Sites reach only the server (one mTLS port), so the server relays the bytes: it
gathers the trained models and hands them to the round's aggregator as one `aggregate` task, which the
aggregator's Client API answers with their weighted mean (the script never sees it). If the aggregator fails or
stays silent, the next candidate takes over and the round completes.

The aggregator of each round follows `aggregator`, a rule every site can compute: `round_robin` (the sites in
order, one more each round), `random` (drawn from `seed` and the round) or a list of sites taking turns. Sites
that answered the round's training are tried first. What the server learns: every site's model, as it relays
them (as FedAvg's server does); the aggregation itself happens at a site. The server holds the round's models
at once while it relays them. State saved with each round: which site aggregated each round.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Literal, cast

from pydantic import Field

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError
from flctl.node.workflows.state import WorkflowState

if TYPE_CHECKING:
    from flctl.node.workflows.aggregation import WeightedSum


class SwarmArgs(WorkflowArgs):
    """`workflow.args` of a `swarm` job."""

    rounds: int = Field(ge=1, description="How many rounds of training to run")
    round_timeout_s: float = Field(300.0, gt=0, description="Seconds the training, and each aggregation try, wait "
                                                            "for the sites' answers")
    aggregator: Literal["round_robin", "random"] | list[str] = Field(
        "round_robin", description="Who aggregates each round: round_robin (the sites in turn), random (from seed "
                                   "and the round) or a list of sites taking turns; the others take over in order")
    seed: int = Field(0, description="Seed of the random aggregator choice")


class Swarm(Workflow):
    """Sites train; a site aggregates; the server relays and records."""

    type_name: ClassVar[str] = "swarm"
    Args: ClassVar[type[WorkflowArgs]] = SwarmArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(SwarmArgs, args)  # checked by Workflow.__init__
        self.aggregators: dict[int, str] = {}

    def candidates(self, round_no: int, sites: list[str]) -> list[str]:
        """Round `round_no`'s aggregator first, then who takes over, in order."""
        rule = self.settings.aggregator
        if isinstance(rule, list):
            turns = [site for site in rule if site in sites]
            rest = [site for site in sites if site not in turns]
            if not turns:
                return sites
            shift = round_no % len(turns)
            return turns[shift:] + turns[:shift] + rest
        if rule == "random":
            order = sorted(sites)
            random.Random(f"{self.settings.seed}:{round_no}").shuffle(order)
            return order
        shift = round_no % len(sites)
        return sites[shift:] + sites[:shift]

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        model: Params = dict(initial) if initial is not None else {}
        saved = f"round-{start_round - 1}" if initial is not None and start_round > 0 else ""
        timeout = self.settings.round_timeout_s
        for round_no in range(start_round, self.settings.rounds):
            sites = fed.sites()
            if len(sites) < self.min_sites:
                raise WorkflowError(f"round {round_no + 1}: {self.min_sites} sites are required but the job has "
                                    f"{len(sites)}")
            task = Task(TaskKind.TRAIN, round_no, model, meta={"rounds": self.settings.rounds}, saved_as=saved)
            trained = self._gather(fed, round_no, sites, model, fed.send(task, sites, timeout))
            if len(trained) < self.min_sites:
                raise WorkflowError(f"round {round_no + 1}: {len(trained)} of the {self.min_sites} required sites "
                                    f"trained within {timeout:g} s")
            order = self.candidates(round_no, sites)
            order = [site for site in order if site in trained] + [site for site in order if site not in trained]
            model = self._aggregate(fed, round_no, order, model, trained)
            self.checkpoint(fed, round_no, model)
            saved = f"round-{round_no}"
            fed.record_round(round_no, {site: metrics for site, (_, _, metrics) in trained.items()})
            fed.log(f"round {round_no + 1} of {self.settings.rounds}: {len(trained)} of {len(sites)} "
                    f"sites trained, {self.aggregators[round_no]} aggregated")
        fed.save_model("final", model, saved_as=saved)
        return model

    def _gather(self, fed: Federation, round_no: int, sites: list[str], model: Params,
                answers: Iterable[TaskResult | SiteFailure]) -> dict[str, tuple[Params, int, dict[str, float]]]:
        """The sites' trained models that fit the model (and one another), with their examples and metrics."""
        from flctl.node.workflows.aggregation import WeightedSum, full_params

        fit: WeightedSum = WeightedSum(like=model or None)
        trained: dict[str, tuple[Params, int, dict[str, float]]] = {}
        for answer in answers:
            if answer.site not in sites or answer.site in trained:
                continue
            if isinstance(answer, SiteFailure):
                fed.log(f"round {round_no + 1}: {answer.site} failed: {answer.reason}")
                continue
            try:
                if answer.num_examples < 0:
                    raise ValueError(f"num_examples {answer.num_examples} is negative")
                params = full_params(answer.params, answer.meta.get(PARAMS_TYPE, "full"), lambda: model)
                fit.check(params, answer.site)
                if not trained:
                    fit = WeightedSum(like=params, like_name=f"{answer.site}'s model")
            except ValueError as exc:
                fed.log(f"round {round_no + 1}: {answer.site} sent an unusable model: {exc}")
                continue
            trained[answer.site] = (params, answer.num_examples, dict(answer.metrics))
        return trained

    def _aggregate(self, fed: Federation, round_no: int, order: list[str], model: Params,
                   trained: dict[str, tuple[Params, int, dict[str, float]]]) -> Params:
        """Ask each candidate in turn to aggregate the trained models; the first usable answer."""
        from flctl.node.workflows.aggregation import WeightedSum

        bundle = {f"{site}/{name}": value for site, (params, _, _) in trained.items() for name, value in params.items()}
        weights = {site: n for site, (_, n, _) in trained.items()}
        like = next(iter(trained.values()))[0]
        for candidate in order:
            task = Task(TaskKind.AGGREGATE, round_no, bundle, meta={"weights": weights})
            answer = next(iter(fed.send(task, [candidate], self.settings.round_timeout_s)), None)
            if answer is None or isinstance(answer, SiteFailure) or answer.site != candidate:
                why = "no answer" if answer is None else getattr(answer, "reason", f"an answer from {answer.site}")
                fed.log(f"round {round_no + 1}: {candidate} could not aggregate ({why}); the next site takes over")
                continue
            try:
                WeightedSum(like=like, like_name="the trained models").check(answer.params, candidate)
            except ValueError as exc:
                fed.log(f"round {round_no + 1}: {candidate} sent an unusable aggregate ({exc}); the next site "
                        "takes over")
                continue
            self.aggregators[round_no] = candidate
            return dict(answer.params)
        raise WorkflowError(f"round {round_no + 1}: no site could aggregate (tried {', '.join(order)})")

    def state(self) -> WorkflowState:
        return WorkflowState({"aggregators": {str(r): site for r, site in sorted(self.aggregators.items())}})

    def restore(self, state: WorkflowState) -> None:
        saved = state.values.get("aggregators")
        if not isinstance(saved, dict) or not all(key.isdigit() and isinstance(site, str)
                                                  for key, site in saved.items()):
            raise WorkflowError(f"the saved swarm state is damaged (aggregators {saved!r})")
        self.aggregators = {int(key): site for key, site in saved.items()}
