"""The daemon's side of metrics export: one exporter process (`feeder`) per running job that exports.

The daemon only writes `JOB_DIR/export.json` (`ExportPlan`: the job's `metrics` section over the server's
`local/metrics.yml`) and starts the process; the process reads the metrics from the server's store itself, so
exporting costs the daemon's hot path (a site's report) nothing and can neither block nor fail the job. Its
stderr is the job's server log; its stdin stays open while the daemon runs (end of file: the daemon is gone).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from flctl.node.jobs.metrics_spec import LocalMetricsSpec, MetricsSpec, MlflowSpec

EXPORT_PLAN = "export.json"
FEEDER = [sys.executable, "-m", "flctl.node.server.metrics_export.feeder"]


class ExportPlan(BaseModel):
    """`JOB_DIR/export.json`: which job, where its metrics are stored and where they go."""

    job_id: str
    job_name: str
    db: str
    sites: list[str]
    workflow: str
    workflow_args: dict[str, Any]
    metrics: dict[str, Any]  # a LocalMetricsSpec: the job's choices over the server's


def export_plan(job_id: str, spec: dict[str, Any], sites: list[str], db: Path,
                defaults: LocalMetricsSpec) -> tuple[ExportPlan | None, str]:
    """What the job exports (None: nothing, so no process is started), and a line for the job's log when the
    server overrode the job's choice."""
    try:
        own = MetricsSpec.model_validate(spec.get("metrics") or {})
    except ValidationError:  # checked at submit; a job recorded before that check exports what the server names
        own = MetricsSpec()
    note = ""
    if not defaults.job_tracking_uri and own.mlflow is not None and own.mlflow.tracking_uri:
        server = defaults.mlflow.tracking_uri if defaults.mlflow is not None else None
        note = (f"the job names the MLflow tracking server {own.mlflow.tracking_uri}, but this server lets jobs use "
                f"only its own (local/metrics.yml: job_tracking_uri: false): {server or 'none, so no MLflow export'}")
        kept = own.mlflow.model_dump(exclude_unset=True, exclude={"tracking_uri"})  # the server's URI fills it in
        own = own.model_copy(update={"mlflow": MlflowSpec.model_validate(kept)})
    metrics = own.over(defaults)
    if not metrics.exporters():
        return None, note
    workflow = spec.get("workflow") or {}
    return ExportPlan(job_id=job_id, job_name=str(spec.get("name", job_id)), db=str(db), sites=sites,
                      workflow=str(workflow.get("type", "")), workflow_args=dict(workflow.get("args") or {}),
                      metrics=metrics.model_dump(mode="json", exclude_none=True)), note


class Feeders:
    """The exporter processes of the running jobs; `defaults` is the server's `local/metrics.yml`."""

    def __init__(self, db: Path, on_log: Callable[[str, str], None], popen_args: dict[str, Any]) -> None:
        self.defaults = LocalMetricsSpec()
        self._db = db
        self._on_log = on_log  # (job id, line) -> into the job's server log
        self._popen_args = popen_args
        self._running: dict[str, subprocess.Popen[str]] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str, job_dir: Path, spec: dict[str, Any], sites: list[str]) -> None:
        """Start the job's exporter process, unless it exports nothing or one runs; a failure is logged, never
        raised (exporting never fails a job)."""
        plan, note = export_plan(job_id, spec, sites, self._db, self.defaults)
        if note:
            self._on_log(job_id, note)
        with self._lock:
            if plan is None or (job_id in self._running and self._running[job_id].poll() is None):
                return
            try:
                (job_dir / EXPORT_PLAN).write_text(plan.model_dump_json())
                process = subprocess.Popen([*FEEDER, str(job_dir)], **self._popen_args)
            except OSError as exc:
                self._on_log(job_id, f"metrics export could not start: {exc}; the metrics stay in flctl "
                                     f"(flctl job metrics {job_id})")
                return
            self._running[job_id] = process
        assert process.stderr is not None
        threading.Thread(target=self._follow, args=(job_id, process, process.stderr), daemon=True,
                         name=f"export-{job_id[:8]}").start()

    def _follow(self, job_id: str, process: subprocess.Popen[str], stream: IO[str]) -> None:
        """The process's lines into the job's log until it exits; then it is reaped."""
        for line in stream:
            with contextlib.suppress(Exception):  # a full disk, say: the exporter's own line is not worth a crash
                self._on_log(job_id, line.rstrip())
        process.wait()
        with self._lock:
            if self._running.get(job_id) is process:
                del self._running[job_id]

    def stop_all(self) -> None:
        """The daemon stops: each process is told (end of its stdin), exports what it has and exits by itself."""
        with self._lock:
            processes = list(self._running.values())
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                if process.stdin is not None:
                    process.stdin.close()
