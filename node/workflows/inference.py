"""Federated inference (`workflow.type: inference`): the job's model goes to every site once, each site runs the job's
script over its own data, and only the figures the job declares come back.

    workflow:
      type: inference
      args: {returns: [count, accuracy], sum: [count], timeout_s: 600}
    initial_model: app/net.py:make_model     # or a safetensors file of the job, or job:<JOB_ID> (a finished job's)

One `inference` task carries the model (its meta says `returns`); the script answers it with
`fl.send(fl.Model(metrics={...}, num_examples=n))` and keeps what it writes (predictions, generations) in
`fl.output_dir()`, at the site. Before an answer leaves a site its job process keeps only the metrics `returns`
names, no params, no meta (`flctl.node.site.inference_release`), then the site's privacy filters apply as to any
answer; the workflow drops anything undeclared once more on arrival (a site of an older flctl).

The result is the job's report `inference` (`reports/inference.json`, shown by `flctl job show`):

    {"returns": ["count", "accuracy"], "sum": ["count"],
     "sites": {"site-1": {"num_examples": 600, "metrics": {"count": 600, "accuracy": 0.93}}, ...},
     "all_sites": {"count": 1800, "accuracy": 0.925},
     "missing": {"site-3": "why"}}

`all_sites` sums the metrics named in `sum` and averages the others weighted by each site's `num_examples` (a plain
mean when no site gave one). Each site's metrics are also recorded as round 0's, as a training round's are. The
model is not saved again: an inference job has no final model of its own (its download carries no model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar, cast

from pydantic import Field, field_validator, model_validator

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "inference"
RETURNS_META = "returns"
"""The task meta key that tells the script which metrics leave its site."""


class InferenceArgs(WorkflowArgs):
    """`workflow.args` of an `inference` job."""

    returns: list[str] = Field(
        min_length=1, description="The metrics a site's answer may carry (say, [count, accuracy]); the site drops "
        "every other metric, every param and all meta before its answer leaves it")
    sum: list[str] = Field(
        default_factory=list, description="Metrics of `returns` summed across sites in the report's all_sites row "
        "(say, [count]); the others are averaged, weighted by each site's num_examples")
    timeout_s: float = Field(3600.0, gt=0, description="Seconds the server waits for the sites' answers")

    @field_validator("returns")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            if not name.strip():
                raise ValueError("a metric name may not be empty")
            if name in seen:
                raise ValueError(f"'{name}' is named twice")
            seen.add(name)
        return value

    @model_validator(mode="after")
    def _summed_are_returned(self) -> InferenceArgs:
        for name in self.sum:
            if name not in self.returns:
                raise ValueError(f"sum names '{name}', which is not in returns ({', '.join(self.returns)})")
        return self


class Inference(Workflow):
    """Send the model to every site once; gather each site's declared metrics into the report `inference`."""

    type_name: ClassVar[str] = "inference"
    Args: ClassVar[type[WorkflowArgs]] = InferenceArgs
    needs_initial_model: ClassVar[bool] = True  # the model the sites run: a file, a function, or job:<ID>

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(InferenceArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        if not initial:
            raise WorkflowError("inference needs a model to send: give job.yml an initial_model (a safetensors file "
                                "of the job, app/FILE.py:FUNCTION, or job:<JOB_ID> for a finished job's model)")
        sites = fed.sites()
        answers = fed.send(inference_task(initial, self.settings.returns), sites, self.settings.timeout_s)
        report = gather(answers, sites, self.settings.returns, self.settings.sum, self.settings.timeout_s)
        for site, why in report["missing"].items():
            fed.log(f"inference: {site} {why}")
        for site, dropped in report.pop("dropped").items():
            fed.log(f"inference: {site} answered with undeclared {', '.join(dropped)}: dropped")
        answered = len(report["sites"])
        fed.record_round(0, {site: dict(entry["metrics"]) for site, entry in report["sites"].items()})
        fed.save_report(REPORT, report)
        fed.log(f"inference: {answered} of {len(sites)} sites answered; see `flctl job show`")
        if answered < self.min_sites:
            raise WorkflowError(f"only {answered} of {len(sites)} sites answered the inference task, fewer than "
                                f"min_sites ({self.min_sites}); see the report's missing sites")
        return {}


def inference_task(model: Params, returns: list[str]) -> Task:
    """The one task every site gets: the model, and which metrics may come back."""
    return Task(TaskKind.INFERENCE, 0, model, meta={RETURNS_META: list(returns)})


def declared(metrics: dict[str, float], returns: Iterable[str]) -> tuple[dict[str, float], list[str]]:
    """(the metrics `returns` names, as finite floats; the names of those dropped: undeclared, or not a finite
    number). Pure: the site's release and the workflow's check on arrival apply the same rule."""
    allowed = set(returns)
    kept: dict[str, float] = {}
    dropped: list[str] = []
    for name, value in metrics.items():
        number = _finite(value)
        if name in allowed and number is not None:
            kept[name] = number
        else:
            dropped.append(name)
    return kept, sorted(dropped)


def gather(answers: Iterable[TaskResult | SiteFailure], sites: list[str], returns: list[str], summed: list[str],
           timeout_s: float) -> dict[str, Any]:
    """The report of the answers to the inference task (pure): each site's declared metrics, the all-sites row,
    the sites that gave none and why, and (under `dropped`, for the log; not saved) what was dropped per site."""
    got: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    dropped: dict[str, list[str]] = {}
    for answer in answers:
        if answer.site not in sites or answer.site in got or answer.site in missing:
            continue
        if isinstance(answer, SiteFailure):
            missing[answer.site] = f"failed: {answer.reason}"
            continue
        kept, extra = declared(answer.metrics, returns)
        if answer.params:
            extra.append(f"params ({len(answer.params)} tensors)")
        if extra:
            dropped[answer.site] = extra
        got[answer.site] = {"num_examples": max(int(answer.num_examples), 0), "metrics": kept}
    for site in sites:
        if site not in got and site not in missing:
            missing[site] = f"gave no answer within {timeout_s:g} s"
    ordered = {site: got[site] for site in sites if site in got}
    return {"returns": list(returns), "sum": list(summed), "sites": ordered,
            "all_sites": combine(ordered, returns, summed), "missing": missing, "dropped": dropped}


def combine(sites: dict[str, dict[str, Any]], returns: list[str], summed: list[str]) -> dict[str, float]:
    """The all-sites row (pure): a metric of `summed` as the sum over the sites that gave it; any other as its mean
    weighted by those sites' num_examples, or the plain mean when none of them gave num_examples."""
    row: dict[str, float] = {}
    for name in returns:
        given = [(float(entry["metrics"][name]), int(entry["num_examples"])) for entry in sites.values()
                 if name in entry["metrics"]]
        if not given:
            continue
        if name in summed:
            row[name] = math.fsum(value for value, _ in given)
            continue
        weight = sum(n for _, n in given)
        row[name] = (math.fsum(value * n for value, n in given) / weight if weight > 0
                     else math.fsum(value for value, _ in given) / len(given))
    return row


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
