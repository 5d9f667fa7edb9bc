"""Federated averaging (McMahan et al.): each round, sites train the global model and the server
averages their models weighted by how many examples each trained on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import Field, model_validator

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, SiteFailure, Task, TaskKind, TaskResult

if TYPE_CHECKING:
    from flctl.node.workflows.aggregation import WeightedSum
    from flctl.node.workflows.secure_sum import SecureSum
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError


class FedAvgArgs(WorkflowArgs):
    """`workflow.args` of a `fedavg` job."""

    rounds: int = Field(ge=1, description="How many rounds of training to run")
    round_timeout_s: float = Field(
        300.0, gt=0, description="Seconds a round waits for the sites' answers before going on with those it has"
    )
    evaluate_every: int = Field(0, ge=0, description="Evaluate the global model at every site after every N rounds "
                                                     "(and after the last); 0: never. Sites answer metrics only, "
                                                     "recorded as val_<name>")
    cross_site_eval: bool = Field(False, description="After the last round, evaluate the final model and every "
                                                     "site's own at every site (see the cross_site_eval workflow)")
    proximal_mu: float = Field(0.0, ge=0, description="FedProx (Li et al. 2020): the weight mu of the proximal term "
                                                      "sites add to their loss (fl.proximal_term); 0: plain FedAvg")
    encryption: Literal["none", "he"] = Field(
        "none", description="he: sites encrypt their weighted models with the project's CKKS context (provisioned "
                            "with homomorphic_encryption), the server adds ciphertexts and never sees a model; the "
                            "sites decrypt the sum and keep the final model")
    secure_aggregation: Literal["none", "masking"] = Field(
        "none", description="masking: sites add pairwise masks that cancel in the sum to quantized updates "
                            "(SecAgg+): the server learns the average only")
    masking_threshold: int = Field(
        0, ge=0, description="masking: t, the sites that must survive a round (t of the n that exchanged keys; "
                             "more than half of them); 0: a majority, n // 2 + 1")

    secure_modes: ClassVar[frozenset[str]] = frozenset(("he", "masking"))
    """The secure-aggregation modes this workflow supports (a server step on the plain model rules HE out)."""

    @model_validator(mode="after")
    def _secure_mode_fits(self) -> FedAvgArgs:
        if self.encryption != "none" and self.secure_aggregation != "none":
            raise ValueError("choose encryption: he or secure_aggregation: masking, not both")
        mode = self.secure_mode()
        if mode != "none" and mode not in self.secure_modes:
            field = "encryption" if mode == "he" else "secure_aggregation"
            allowed = " or ".join(sorted(self.secure_modes)) or "none of them"
            raise ValueError(f"{field}: {mode} does not fit this workflow (its server step needs the plain model); "
                             f"it supports {allowed}")
        if mode == "he" and self.cross_site_eval:
            raise ValueError("cross_site_eval needs the server to hold the plain final model, which encryption: he "
                             "never gives it; evaluate_every still works (sites decrypt the model they evaluate)")
        if mode == "masking" and self.cross_site_eval:
            raise ValueError("cross_site_eval asks every site for its own model in clear, which secure_aggregation: "
                             "masking exists to prevent; evaluate_every still works")
        if self.masking_threshold and mode != "masking":
            raise ValueError("masking_threshold is for secure_aggregation: masking")
        if self.masking_threshold == 1:
            raise ValueError("masking_threshold 1 would let the server unmask a site alone; use 2 or more")
        return self

    def secure_mode(self) -> str:
        """'he', 'masking' or 'none'."""
        return self.encryption if self.encryption != "none" else self.secure_aggregation


class FedAvg(Workflow):
    """Send the global model to every site, average what comes back, repeat for `rounds` rounds."""

    type_name: ClassVar[str] = "fedavg"
    Args: ClassVar[type[WorkflowArgs]] = FedAvgArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(FedAvgArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        """Run rounds `start_round`..`rounds - 1`; with no `initial` model, round 0's average becomes the first one.

        Once a round's task is on its way, this holds no reference to the old global model (unless `server_step`
        needs it): with a `send` that lets the task go once sent (the server's does), the server holds one
        model, plus the running sum, at a time.
        """
        from flctl.node.wire.model_buffers import ModelBuffers
        from flctl.node.workflows.aggregation import (
            WeightedSum,  # numpy: imported when a job runs, not when one is checked
        )
        from flctl.node.workflows.secure_sum import secure_round

        secure = secure_round(self.settings.secure_mode(), fed, self.min_sites, self.settings.masking_threshold)
        model: Params = dict(initial) if initial is not None else {}
        sum_buffers = ModelBuffers(keep=1)  # each round's sums, in last round's buffer once its mean is let go
        # the checkpoint `model` is: on a resume, `initial` is round start_round - 1's
        saved = f"round-{start_round - 1}" if initial is not None and start_round > 0 else ""
        del initial
        for round_no in range(start_round, self.settings.rounds):
            sites = fed.sites()
            if len(sites) < self.min_sites:
                raise WorkflowError(f"round {round_no + 1}: {self.min_sites} sites are required but the job has "
                                    f"{len(sites)}")
            self.begin_round(round_no, sites)
            timeout = self.settings.round_timeout_s
            meta = self.task_meta()
            total: WeightedSum | SecureSum
            if secure is not None:
                extra, sites = secure.prepare(fed, round_no, sites, timeout)
                meta.update(extra)
                total = secure.new_sum(fed, round_no, sites, timeout)
            else:
                total = WeightedSum(like=model or None, buffers=sum_buffers)
            params = self.task_params(model)
            answers = fed.send(Task(TaskKind.TRAIN, round_no, params, meta=meta,
                                    saved_as=saved if params is model else ""), sites, self.settings.round_timeout_s)
            previous = model if self.keeps_previous_model or not saved else {}
            del model, params
            base = _Base(fed, previous, saved)
            answered, average = self._collect(fed, round_no, sites, answers, total, base)
            del base
            model = self.server_step(previous, average)
            del previous, average
            self.checkpoint(fed, round_no, model)
            saved = f"round-{round_no}"
            metrics = {site: metrics for site, (metrics, _) in answered.items()}
            fed.log(round_summary(round_no, self.settings.rounds, len(sites), answered))
            if self._evaluates(round_no):
                for site, values in evaluate(fed, round_no, model, saved, sites, self.settings.round_timeout_s).items():
                    metrics[site] = {**metrics.get(site, {}), **values}
            fed.record_round(round_no, metrics)
        fed.save_model("final", model, saved_as=saved)
        if secure is not None:
            secure.finish(fed, model, fed.sites(), self.settings.round_timeout_s)
        if self.settings.cross_site_eval:
            from flctl.node.workflows.cross_site_eval import cross_evaluate

            cross_evaluate(fed, model, self.settings.round_timeout_s)
        return model

    def _evaluates(self, round_no: int) -> bool:
        every = self.settings.evaluate_every
        return bool(every) and ((round_no + 1) % every == 0 or round_no + 1 == self.settings.rounds)

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

    def add_answer(self, total: WeightedSum | SecureSum, answer: TaskResult, base: Callable[[], Params]) -> None:
        """Add a site's answer (its model, or `base()` plus its diff) to the round's sum, weighted by its examples;
        ValueError, changing nothing, when it does not fit the model (other names, shapes or dtypes, or values that
        are not finite). A secure sum takes the site's opaque payload as it is."""
        from flctl.node.workflows.aggregation import full_params
        from flctl.node.workflows.secure_sum import SecureSum

        if isinstance(total, SecureSum):
            total.add(answer)
            return

        if answer.num_examples < 0:
            raise ValueError(f"num_examples {answer.num_examples} is negative")
        params = full_params(answer.params, answer.meta.get(PARAMS_TYPE, "full"), base)
        total.add(params, answer.num_examples, site=answer.site)

    keeps_previous_model: ClassVar[bool] = False
    """Whether `server_step` needs the round's global model: it is then held while the round runs."""

    def server_step(self, previous: Params, average: Params) -> Params:
        """The next global model from the one sent (`previous`: empty unless `keeps_previous_model`, and before
        the first model) and the sites' average; FedAvg takes the average as it is."""
        return average

    def _collect(self, fed: Federation, round_no: int, sites: list[str], answers: Iterable[TaskResult | SiteFailure],
                 total: WeightedSum | SecureSum, base: Callable[[], Params]
                 ) -> tuple[dict[str, tuple[dict[str, float], int]], Params]:
        """Add up a round's answers as they come: who answered (metrics, examples) and the weighted average."""
        timeout = self.settings.round_timeout_s
        answered: dict[str, tuple[dict[str, float], int]] = {}
        failed: dict[str, str] = {}
        for answer in answers:
            if answer.site not in sites or answer.site in answered or answer.site in failed:
                fed.log(f"round {round_no + 1}: ignored an unexpected or repeated answer from {answer.site}")
                continue
            if isinstance(answer, SiteFailure):
                self._fail(fed, round_no, answer.site, answer.reason, failed, len(sites))
                continue
            try:
                self.add_answer(total, answer, base)
            except ValueError as exc:
                self._fail(fed, round_no, answer.site, f"sent an unusable model: {exc}", failed, len(sites))
                continue
            answered[answer.site] = (dict(answer.metrics), answer.num_examples)
        if len(answered) < self.min_sites:
            silent = [site for site in sites if site not in answered and site not in failed]
            raise WorkflowError(
                f"round {round_no + 1}: {len(answered)} of {self.min_sites} required sites answered within "
                f"{timeout:g} s"
                + failure_details(failed, silent)
            )
        return answered, total.result()

    def _fail(self, fed: Federation, round_no: int, site: str, reason: str, failed: dict[str, str], n: int) -> None:
        """Note a failed site; raise as soon as too few sites are left to reach min_sites."""
        failed[site] = reason
        fed.log(f"round {round_no + 1}: {site} failed: {reason}")
        if n - len(failed) < self.min_sites:
            raise WorkflowError(
                f"round {round_no + 1}: {len(failed)} of {n} sites failed, so fewer than the {self.min_sites} "
                f"required can answer" + failure_details(failed, [])
            )


def evaluate(fed: Federation, round_no: int, model: Params, saved: str, sites: list[str],
             timeout_s: float) -> dict[str, dict[str, float]]:
    """Send `model` (saved as `saved`) to `sites` as an `evaluate` task; each site's metrics as `val_<name>`. A site
    that fails, stays silent or answers with a model (a script that does not handle evaluate tasks) is left out,
    with the reason in the log; the job goes on."""
    from flctl.node.workflows.aggregation import weighted_metrics

    task = Task(TaskKind.EVALUATE, round_no, model, meta={"evaluate": True}, saved_as=saved)
    results: dict[str, tuple[dict[str, float], int]] = {}
    for answer in fed.send(task, sites, timeout_s):
        if answer.site not in sites or answer.site in results:
            continue
        if isinstance(answer, SiteFailure):
            fed.log(f"round {round_no + 1} evaluation: {answer.site} failed: {answer.reason}")
        elif answer.params:
            fed.log(f"round {round_no + 1} evaluation: {answer.site} answered with a model, not metrics: its script "
                    "does not handle evaluate tasks (ask fl.is_evaluate() and send metrics only)")
        else:
            results[answer.site] = ({f"val_{name}": value for name, value in answer.metrics.items()},
                                    answer.num_examples)
    means = weighted_metrics(results.values())
    fed.log(f"round {round_no + 1} evaluation: {len(results)} of {len(sites)} sites" +
            "".join(f", {name} {value:.4g}" for name, value in means.items()))
    return {site: values for site, (values, _) in results.items()}


class _Base:
    """The model a round was sent, for the answers that are diffs: held (`previous`), else read from its checkpoint
    once, the first time a diff needs it."""

    def __init__(self, fed: Federation, previous: Params, saved: str) -> None:
        self._fed, self._model, self._saved = fed, previous, saved

    def __call__(self) -> Params:
        if not self._model and self._saved:
            self._model = self._fed.load_model(self._saved)
        return self._model


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
    return (f"round {round_no + 1} of {rounds}: {len(results)} of {sites} sites answered, "
            f"{examples} examples{shown}")
