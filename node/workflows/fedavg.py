"""Federated averaging (McMahan et al.): each round, sites train the global model and the server
averages their models weighted by how many examples each trained on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult

if TYPE_CHECKING:
    from flctl.node.workflows.aggregation import WeightedSum
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError


class FedAvgArgs(WorkflowArgs):
    """`workflow.args` of a `fedavg` job."""

    rounds: int = Field(ge=1, description="How many rounds of training to run")
    round_timeout_s: float = Field(
        300.0, gt=0, description="Seconds a round waits for the sites' answers before going on with those it has"
    )
    proximal_mu: float = Field(0.0, ge=0, description="FedProx (Li et al. 2020): the weight mu of the proximal term "
                                                      "sites add to their loss (fl.proximal_term); 0: plain FedAvg")


class FedAvg(Workflow):
    """Send the global model to every site, average what comes back, repeat for `rounds` rounds."""

    type_name: ClassVar[str] = "fedavg"
    Args: ClassVar[type[WorkflowArgs]] = FedAvgArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        if not isinstance(args, FedAvgArgs):
            raise TypeError(f"FedAvg needs FedAvgArgs, not {type(args).__name__}")
        if min_sites < 1:
            raise ValueError(f"min_sites must be at least 1, not {min_sites}")
        super().__init__(args)
        self.settings = args
        self.min_sites = min_sites

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        """Run rounds `start_round`..`rounds - 1`; with no `initial` model, round 0's average becomes the first one.

        Once a round's task is on its way, this holds no reference to the old global model (unless `server_step`
        needs it): with a `send` that lets the task go once sent (the server's does), the server holds one
        model, plus the running sum, at a time.
        """
        from flctl.node.workflows.aggregation import (
            WeightedSum,  # numpy: imported when a job runs, not when one is checked
        )

        model: Params = dict(initial) if initial is not None else {}
        del initial
        saved = ""  # the checkpoint `model` is, once a round has made it
        for round_no in range(start_round, self.settings.rounds):
            sites = fed.sites()
            if len(sites) < self.min_sites:
                raise WorkflowError(f"round {round_no}: {self.min_sites} sites are required but the job has "
                                    f"{len(sites)}")
            self.begin_round(round_no, sites)
            total = WeightedSum(like=model) if model else WeightedSum()
            params = self.task_params(model)
            answers = fed.send(Task(TaskKind.TRAIN, round_no, params, meta=self.task_meta(),
                                    saved_as=saved if params is model else ""), sites, self.settings.round_timeout_s)
            previous = model if self.keeps_previous_model else {}
            del model, params
            answered, average = self._collect(fed, round_no, sites, answers, total)
            model = self.server_step(previous, average)
            del previous, average
            self.checkpoint(fed, round_no, model)
            fed.record_round(round_no, {site: metrics for site, (metrics, _) in answered.items()})
            fed.log(round_summary(round_no, self.settings.rounds, len(sites), answered))
            saved = f"round-{round_no}"
        fed.save_model("final", model, saved_as=saved)
        return model

    def task_meta(self) -> dict[str, Any]:
        """What each training task tells the sites besides the model: the rounds, and FedProx's mu when set."""
        meta: dict[str, Any] = {"rounds": self.settings.rounds}
        if self.settings.proximal_mu:
            meta["proximal_mu"] = self.settings.proximal_mu
        return meta

    def begin_round(self, round_no: int, sites: list[str]) -> None:
        """Called as each round starts, with the sites it is sent to; FedAvg has nothing to prepare."""

    def task_params(self, model: Params) -> Params:
        """What each training task carries: the global model itself (SCAFFOLD adds its control variate)."""
        return model

    def add_answer(self, total: WeightedSum, answer: TaskResult) -> None:
        """Add a site's answer to the round's sum (weighted by its examples); ValueError, changing nothing, when it
        does not fit the model (other names, shapes or dtypes, or values that are not finite)."""
        if answer.num_examples < 0:
            raise ValueError(f"num_examples {answer.num_examples} is negative")
        total.add(answer.params, answer.num_examples, site=answer.site)

    keeps_previous_model: ClassVar[bool] = False
    """Whether `server_step` needs the round's global model: it is then held while the round runs."""

    def server_step(self, previous: Params, average: Params) -> Params:
        """The next global model from the one sent (`previous`: empty unless `keeps_previous_model`, and before
        the first model) and the sites' average; FedAvg takes the average as it is."""
        return average

    def _collect(self, fed: Federation, round_no: int, sites: list[str], answers: Iterable[TaskResult | SiteFailure],
                 total: WeightedSum) -> tuple[dict[str, tuple[dict[str, float], int]], Params]:
        """Add up a round's answers as they come: who answered (metrics, examples) and the weighted average."""
        timeout = self.settings.round_timeout_s
        answered: dict[str, tuple[dict[str, float], int]] = {}
        failed: dict[str, str] = {}
        for answer in answers:
            if answer.site not in sites or answer.site in answered or answer.site in failed:
                fed.log(f"round {round_no}: ignored an unexpected or repeated answer from {answer.site}")
                continue
            if isinstance(answer, SiteFailure):
                self._fail(fed, round_no, answer.site, answer.reason, failed, len(sites))
                continue
            try:
                self.add_answer(total, answer)
            except ValueError as exc:
                self._fail(fed, round_no, answer.site, f"sent an unusable model: {exc}", failed, len(sites))
                continue
            answered[answer.site] = (dict(answer.metrics), answer.num_examples)
        if len(answered) < self.min_sites:
            silent = [site for site in sites if site not in answered and site not in failed]
            raise WorkflowError(
                f"round {round_no}: {len(answered)} of {self.min_sites} required sites answered within {timeout:g} s"
                + failure_details(failed, silent)
            )
        return answered, total.result()

    def _fail(self, fed: Federation, round_no: int, site: str, reason: str, failed: dict[str, str], n: int) -> None:
        """Note a failed site; raise as soon as too few sites are left to reach min_sites."""
        failed[site] = reason
        fed.log(f"round {round_no}: {site} failed: {reason}")
        if n - len(failed) < self.min_sites:
            raise WorkflowError(
                f"round {round_no}: {len(failed)} of {n} sites failed, so fewer than the {self.min_sites} "
                f"required can answer" + failure_details(failed, [])
            )


def failure_details(failed: dict[str, str], silent: list[str]) -> str:
    parts = []
    if failed:
        parts.append("failed: " + ", ".join(f"{site} ({reason})" for site, reason in failed.items()))
    if silent:
        parts.append("no answer from " + ", ".join(silent))
    return "; " + "; ".join(parts) if parts else ""


def round_summary(round_no: int, rounds: int, sites: int, results: dict[str, tuple[dict[str, float], int]]) -> str:
    examples = sum(n for _, n in results.values())
    from flctl.node.workflows.aggregation import weighted_metrics

    means = weighted_metrics(results.values())
    shown = "".join(f", {name} {value:.4g}" for name, value in means.items())
    return (f"round {round_no} ({round_no + 1} of {rounds}): {len(results)} of {sites} sites answered, "
            f"{examples} examples{shown}")
