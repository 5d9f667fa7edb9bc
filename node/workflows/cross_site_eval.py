"""Cross-site evaluation (NVIDIA FLARE's CrossSiteModelEval): every site's own best model, and the global model when
there is one, evaluated at every site. First each site is asked for its model (a `submit_model` task); then each
model goes to every site as an `evaluate` task. The result is an N x (N+1) matrix, saved as the job's report
`cross_site_eval` (`reports/cross_site_eval.json`, shown by `flctl job show`):

    {"models": ["global", "site-1", ...], "sites": ["site-1", ...],
     "metrics": {"<evaluating site>": {"<model>": {"<metric>": value}}},
     "missing": {"<model or site>": "why"}}

It runs alone (`type: cross_site_eval`, the global model from `model:`, a safetensors file in the job folder) or
after training (`fedavg`'s `cross_site_eval: true`, the global model being the final one). A site that cannot
submit or evaluate is named in `missing` and the log; the evaluation goes on.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from pydantic import Field

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "cross_site_eval"
GLOBAL = "global"


class CrossSiteEvalArgs(WorkflowArgs):
    """`workflow.args` of a `cross_site_eval` job."""

    model: str = Field("", description="A safetensors file in the job folder (say, model/global.safetensors) "
                                       "evaluated as the global model beside the sites' own; empty: theirs only")
    timeout_s: float = Field(300.0, gt=0, description="Seconds each step (submitting, evaluating one model) waits "
                                                      "for the sites' answers")


class CrossSiteEval(Workflow):
    """Ask every site for its model, then have every site evaluate every model."""

    type_name: ClassVar[str] = "cross_site_eval"
    Args: ClassVar[type[WorkflowArgs]] = CrossSiteEvalArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(CrossSiteEvalArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        global_model = dict(initial) if initial else self._given_model(fed)
        cross_evaluate(fed, global_model, self.settings.timeout_s)
        if global_model:
            fed.save_model("final", global_model)
        return global_model

    def _given_model(self, fed: Federation) -> Params:
        if not self.settings.model:
            return {}
        from flctl.node.wire import tensors

        try:
            return tensors.decode(fed.job_file(self.settings.model))
        except (OSError, ValueError) as exc:
            raise WorkflowError(f"workflow.args.model: cannot read {self.settings.model!r} from the job folder: "
                                f"{exc}") from None


def cross_evaluate(fed: Federation, global_model: Params, timeout_s: float) -> dict[str, Any]:
    """Run the two steps and save the matrix as the result `cross_site_eval`; the matrix."""
    sites = fed.sites()
    missing: dict[str, str] = {}
    models: dict[str, Params] = {GLOBAL: global_model} if global_model else {}
    for answer in fed.send(Task(TaskKind.SUBMIT_MODEL, 0, {}), sites, timeout_s):
        if answer.site not in sites or answer.site in models:
            continue
        if isinstance(answer, SiteFailure):
            missing[answer.site] = f"did not submit a model: {answer.reason}"
        elif not answer.params:
            missing[answer.site] = "submitted no model (its script does not handle submit_model tasks: ask " \
                                   "fl.is_submit_model())"
        else:
            models[answer.site] = answer.params
    for site in sites:
        if site not in models and site not in missing:
            missing[site] = f"did not submit a model within {timeout_s:g} s"
    models = {owner: models[owner] for owner in (GLOBAL, *sites) if owner in models}  # in order, whoever answered first
    for site, reason in missing.items():
        fed.log(f"cross-site evaluation: {site} {reason}")
    metrics: dict[str, dict[str, dict[str, float]]] = {site: {} for site in sites}
    for owner, params in models.items():
        _evaluate_everywhere(fed, owner, params, sites, timeout_s, metrics, missing)
    matrix = {"models": list(models), "sites": sites, "metrics": metrics, "missing": missing}
    fed.save_report(REPORT, matrix)
    fed.log(f"cross-site evaluation: {len(models)} models at {len(sites)} sites; see `flctl job show`")
    return matrix


def _evaluate_everywhere(fed: Federation, owner: str, params: Params, sites: list[str], timeout_s: float,
                         metrics: dict[str, dict[str, dict[str, float]]], missing: dict[str, str]) -> None:
    answered: set[str] = set()
    for answer in fed.send(Task(TaskKind.EVALUATE, 0, params, meta={"model_owner": owner}), sites, timeout_s):
        if answer.site not in sites or answer.site in answered:
            continue
        answered.add(answer.site)
        if isinstance(answer, SiteFailure):
            fed.log(f"cross-site evaluation: {answer.site} could not evaluate {owner}'s model: {answer.reason}")
        elif answer.params:
            fed.log(f"cross-site evaluation: {answer.site} answered with a model, not metrics, for {owner}'s "
                    "model: its script does not handle evaluate tasks (ask fl.is_evaluate())")
        else:
            metrics[answer.site][owner] = dict(answer.metrics)
    for site in sites:
        if site not in answered:
            fed.log(f"cross-site evaluation: no answer from {site} for {owner}'s model within {timeout_s:g} s")
