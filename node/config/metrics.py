"""The server's own `local/metrics.yml` (never signed): where the metrics of a job that names nothing go.

    tensorboard: true                               # event files in WORKSPACE/jobs/<id>/tb/ (default)
    mlflow: {tracking_uri: http://mlflow.internal:5000, experiment: federation}
    wandb: {mode: offline}

The keys of job.yml's `metrics` section (`flctl.node.jobs.metrics_spec`); a job's own keys win. Read once, at
start: a key or value that is not allowed stops the server with a KitError (exit 2) naming the file and field.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from flctl.node.config.local_yaml import read_local_yaml
from flctl.node.jobs.metrics_spec import LocalMetricsSpec
from flctl.provisioner.errors import KitError
from flctl.provisioner.schema_messages import message
from flctl.provisioner.yaml_source import format_loc


def metrics_path(kit_root: Path) -> Path:
    return kit_root / "local" / "metrics.yml"


def load_metrics_defaults(path: Path) -> LocalMetricsSpec:
    """The server's metrics defaults from `path`; none (TensorBoard only) when there is no such file."""
    data = read_local_yaml(path, missing={})
    try:
        return LocalMetricsSpec.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise KitError(f"{path}: {format_loc(tuple(err['loc'])) or 'the file'}: "
                       f"{message(err, LocalMetricsSpec)}") from None
