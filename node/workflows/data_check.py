"""Data quality before training: every site checks its data against the job's schema and says, per column, ok or
the rule it breaks and how many rows break it (counts under the site's min_count are not released). The result,
the job's report `data_check` (`reports/data_check.json`), says which sites are fit for training and why not.

    workflow:
      type: data_check
      args:
        schema:
          age: {type: number, min: 0, max: 120, max_missing: 0.05}
          diagnosis: {type: category, categories: [C34, C50, I21, E11, J44]}
          smoker: {type: integer, required: false}

The script is a statistics job's (`fl.serve_statistics(load)`): one `statistics` task, step `data_check`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "data_check"


class ColumnRule(BaseModel):
    """What one column must be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["number", "integer", "category", "any"] = Field("any", description="number, integer, category "
                                                                                     "(text) or any")
    required: bool = Field(True, description="Whether a site without the column is unfit")
    min: float | None = Field(None, description="Smallest value allowed")
    max: float | None = Field(None, description="Largest value allowed")
    categories: list[str | int | float] | None = Field(None, min_length=1, description="The values allowed")
    max_missing: float | None = Field(None, ge=0, le=1, description="Largest share of missing values allowed")

    @model_validator(mode="after")
    def _fits(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is more than max {self.max:g}")
        if self.type == "category" and (self.min is not None or self.max is not None):
            raise ValueError("a category column has no min or max; list its categories")
        return self


class DataCheckArgs(WorkflowArgs):
    """`workflow.args` of a `data_check` job."""

    schema_: dict[str, ColumnRule] = Field(alias="schema", min_length=1,
                                           description="column -> its rule: type, required, min, max, categories, "
                                                       "max_missing")
    min_count: int = Field(0, ge=0, description="A minimum count the job asks of every site (a site's own "
                                                "min_count applies when higher)")
    timeout_s: float = Field(300.0, gt=0, description="Seconds to wait for the sites")


class DataCheck(Workflow):
    """One task: every site's verdict per column; the sites fit for training."""

    type_name: ClassVar[str] = "data_check"
    Args: ClassVar[type[WorkflowArgs]] = DataCheckArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(DataCheckArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        report = check_sites(fed, self.settings)
        fed.save_report(REPORT, report)
        if len(report["results"]) < self.min_sites:
            raise WorkflowError(f"only {len(report['results'])} of {len(report['sites'])} sites answered the data "
                                f"check; min_sites is {self.min_sites}")
        fit = [site for site, ok in report["fit"].items() if ok]
        fed.log(f"data check: {len(fit)} of {len(report['sites'])} sites fit for training; see `flctl job show`")
        return {}


def check_sites(fed: Federation, args: DataCheckArgs) -> dict[str, Any]:
    """Ask every site; {"kind", "sites", "columns", "results": site -> {rows, columns}, "fit": site -> bool,
    "why": site -> [reasons], "failed": site -> reason}."""
    sites = fed.sites()
    schema = {name: rule.model_dump(exclude_none=True) for name, rule in args.schema_.items()}
    task = Task(TaskKind.STATISTICS, 0, {}, meta={"step": "data_check", "schema": schema, "min_count": args.min_count})
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for answer in fed.send(task, sites, args.timeout_s):
        if answer.site not in sites or answer.site in results or answer.site in failed:
            continue
        figures = None if isinstance(answer, SiteFailure) else answer.meta.get("statistics")
        if isinstance(answer, SiteFailure):
            failed[answer.site] = answer.reason
        elif not isinstance(figures, dict) or figures.get("error"):
            failed[answer.site] = str((figures or {}).get("error") or "answered without a data check")
        else:
            results[answer.site] = {"rows": figures.get("rows"), "columns": figures.get("columns") or {}}
    for site in sites:
        if site not in results and site not in failed:
            failed[site] = f"did not answer within {args.timeout_s:g} s"
    why = {site: [f"{column}: {verdict.get('rule', '')}" for column, verdict in result["columns"].items()
                  if not verdict.get("ok")] for site, result in results.items()}
    why.update({site: [f"failed: {reason}"] for site, reason in failed.items()})
    for site, reason in failed.items():
        fed.log(f"data check: {site} failed: {reason}")
    return {"kind": "data_check", "sites": sites, "columns": list(args.schema_), "results": results,
            "fit": {site: site in results and not why[site] for site in sites}, "why": why, "failed": failed}
