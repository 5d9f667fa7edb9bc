"""Weights & Biases, offline: a W&B run per site in `JOB_DIR/wandb/`, grouped by the job's id, the workflow's
arguments as its config, each metric plotted against `flctl_step` (the script's step, else the round: W&B's own
step must only grow, and one site's metrics mix both). Nothing leaves the server; `wandb sync JOB_DIR/wandb/
offline-run-*` uploads the runs later. Needs the `mlops` extra (wandb).
"""

from __future__ import annotations

import os
from typing import Any

from flctl.node.server.metrics_export.base import JobContext, MetricPoint

STEP = "flctl_step"
_END_CODE = {"FINISHED": 0, "FAILED": 1, "ABORTED": 1}


class WandbExporter:
    def __init__(self, job: JobContext, project: str) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self.name = f"W&B offline ({job.job_dir / 'wandb'})"
        self._wandb = wandb
        self._job = job
        self._project = project
        self._runs: dict[str, Any] = {}
        self._defined: dict[str, set[str]] = {}
        (job.job_dir / "wandb").mkdir(parents=True, exist_ok=True)

    def _run(self, site: str) -> Any:
        if site not in self._runs:
            job = self._job
            run = self._wandb.init(mode="offline", dir=str(job.job_dir), project=self._project, group=job.job_id,
                                   name=site, job_type="site", reinit="create_new",
                                   config={"workflow": job.workflow, "job_id": job.job_id, **job.workflow_args})
            run.define_metric(STEP)
            self._runs[site], self._defined[site] = run, set()
        return self._runs[site]

    def write(self, points: list[MetricPoint]) -> None:
        for p in points:
            run = self._run(p.site)
            if p.name not in self._defined[p.site]:
                run.define_metric(p.name, step_metric=STEP)
                self._defined[p.site].add(p.name)
            run.log({p.name: p.value, STEP: p.x})

    def close(self, status: str) -> None:
        for run in self._runs.values():
            run.finish(exit_code=_END_CODE.get(status, 0))
