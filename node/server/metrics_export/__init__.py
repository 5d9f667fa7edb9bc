"""Metrics export: a job's metrics, as they reach the server, also written where data scientists look.

One module per exporter (`tensorboard`, `mlflow`, `wandb`), each an `Exporter` (`base`); `EXPORTERS` names them.
The job's exporter process (`feeder`) reads the metrics from the server's store as they arrive and feeds every
exporter the job's `metrics` section (over the server's `local/metrics.yml`) turns on.
"""

from __future__ import annotations

from collections.abc import Callable

from flctl.node.jobs.metrics_spec import MetricsSpec
from flctl.node.server.metrics_export.base import Exporter, JobContext


def _tensorboard(job: JobContext, spec: MetricsSpec) -> Exporter:
    from flctl.node.server.metrics_export.tensorboard import TensorBoardExporter

    return TensorBoardExporter(job)


def _mlflow(job: JobContext, spec: MetricsSpec) -> Exporter:
    from flctl.node.server.metrics_export.mlflow import MlflowExporter

    assert spec.mlflow is not None and spec.mlflow.tracking_uri
    return MlflowExporter(job, spec.mlflow.tracking_uri, spec.mlflow.experiment or job.job_name)


def _wandb(job: JobContext, spec: MetricsSpec) -> Exporter:
    from flctl.node.server.metrics_export.wandb import WandbExporter

    assert spec.wandb is not None
    return WandbExporter(job, spec.wandb.project or job.job_name)


EXPORTERS: dict[str, Callable[[JobContext, MetricsSpec], Exporter]] = {
    "tensorboard": _tensorboard,
    "mlflow": _mlflow,
    "wandb": _wandb,
}
"""Exporter name (as `MetricsSpec.exporters` gives it) -> a factory; an exporter's heavy imports wait for it."""


def title(name: str, spec: MetricsSpec) -> str:
    """What the job's log calls exporter `name` before it exists (when it cannot start)."""
    if name == "mlflow" and spec.mlflow is not None:
        return f"MLflow at {spec.mlflow.tracking_uri}"
    return {"tensorboard": "TensorBoard", "wandb": "W&B (offline)"}.get(name, name)
