"""MLflow: one run per job (the workflow's arguments as params, the final model as an artifact), a run per site
nested in it (the site's metrics, at the script's step, else the round), in the experiment the job or the server
names (default: the job's name). Run ids are kept in `JOB_DIR/export/mlflow.json`, so a job the server resumes
after a restart goes on logging to the same runs.

HTTP calls to the tracking server are retried once and time out after REQUEST_TIMEOUT_S: a server that cannot be
reached fails this exporter (named once in the job's log), never the job. Needs the `mlops` extra (mlflow).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from flctl.node.server.metrics_export.base import JobContext, MetricPoint

REQUEST_TIMEOUT_S = 10
BATCH = 1000  # MLflow's most metrics in one log_batch call
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_\-. :/]")
_END_STATUS = {"FINISHED": "FINISHED", "FAILED": "FAILED", "ABORTED": "KILLED"}


def metric_key(name: str) -> str:
    """A metric name as MLflow takes it (letters, digits, _ - . space : /; anything else becomes _)."""
    return _NOT_IN_KEY.sub("_", name)[:250] or "_"


class MlflowExporter:
    def __init__(self, job: JobContext, tracking_uri: str, experiment: str) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
        from mlflow.tracking import MlflowClient

        self.name = f"MLflow at {tracking_uri} (experiment {experiment!r})"
        self._job = job
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._state_path = job.job_dir / "export" / "mlflow.json"
        state = self._load_state()
        self._experiment_id: str = state.get("experiment_id") or self._experiment(experiment)
        self._run_id: str = state.get("run_id") or self._job_run()
        self._site_runs: dict[str, str] = dict(state.get("site_runs", {}))
        self._save_state()

    def _load_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"experiment_id": self._experiment_id, "run_id": self._run_id,
                                   "site_runs": self._site_runs}))
        tmp.replace(self._state_path)

    def _experiment(self, name: str) -> str:
        """The experiment's id, made when it does not exist (two jobs making it at once: the loser finds it)."""
        from mlflow.exceptions import MlflowException

        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self._client.create_experiment(name))
        except MlflowException:
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _job_run(self) -> str:
        """The job's run: tagged with its id, the workflow's arguments (and the job's sites) as params."""
        job = self._job
        run = self._client.create_run(self._experiment_id, run_name=f"{job.job_name}-{job.job_id[:8]}",
                                      tags={"flctl.job_id": job.job_id, "flctl.workflow": job.workflow})
        from mlflow.entities import Param

        params = {"workflow": job.workflow, "sites": ",".join(job.sites),
                  **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in job.workflow_args.items()}}
        self._client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return str(run.info.run_id)

    def _site_run(self, site: str) -> str:
        if site not in self._site_runs:
            run = self._client.create_run(self._experiment_id, run_name=site, tags={
                "mlflow.parentRunId": self._run_id, "flctl.job_id": self._job.job_id, "flctl.site": site})
            self._site_runs[site] = str(run.info.run_id)
            self._save_state()
        return self._site_runs[site]

    def write(self, points: list[MetricPoint]) -> None:
        from mlflow.entities import Metric

        by_site: dict[str, list[Metric]] = defaultdict(list)
        for p in points:
            by_site[p.site].append(Metric(metric_key(p.name), p.value, int(p.time * 1000), p.x))
        for site, metrics in by_site.items():
            run_id = self._site_run(site)
            for start in range(0, len(metrics), BATCH):
                self._client.log_batch(run_id, metrics=metrics[start:start + BATCH])

    def close(self, status: str) -> None:
        """The final model as the job run's artifact `model/final.safetensors`; every run ended with the job's
        status (left running when the server stopped first: the resumed job goes on in them)."""
        if not status:
            return
        final = Path(self._job.job_dir) / "models" / "final.safetensors"
        if final.is_file():
            self._client.log_artifact(self._run_id, str(final), artifact_path="model")
        end = _END_STATUS.get(status, "FAILED")
        for run_id in [*self._site_runs.values(), self._run_id]:
            self._client.set_terminated(run_id, status=end)
