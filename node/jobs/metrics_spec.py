"""Where a job's metrics go besides the server's own store: job.yml's `metrics` section, and the server's
`local/metrics.yml` (the same keys: what a job that names nothing gets).

    metrics:
      tensorboard: true                       # event files in WORKSPACE/jobs/<id>/tb/, one run per site (default)
      mlflow: {tracking_uri: http://127.0.0.1:5000, experiment: my-study}
      wandb: {mode: offline, project: my-study}

A job's own key wins over the server's (`mlflow: false` turns off an MLflow the server names). A job may
name only an http(s) tracking URI: the export runs on the server, and a job must not make it write files
there; the server's own `local/metrics.yml` may also name a local path (`file:/srv/mlruns` or `/srv/mlruns`),
and with `job_tracking_uri: false` keep jobs to its own tracking server.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_URI_HINT = "use http://HOST:PORT or https://HOST[:PORT][/PATH] (an MLflow tracking server)"


def check_tracking_uri(uri: str) -> str:
    """`uri` when it is an http(s) URL with a host (and a valid port), else a ValueError saying what is allowed."""
    try:
        parts = urlsplit(uri)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
            or any(c.isspace() for c in uri):
        raise ValueError(f"{uri!r} is not an MLflow tracking URI a job may name; {_URI_HINT}")
    return uri


def check_local_tracking_uri(uri: str) -> str:
    """As `check_tracking_uri`, but the server's operator may also name a folder on the server (file: or a path)."""
    if uri.startswith("file:") or uri.startswith("/"):
        return uri
    try:
        return check_tracking_uri(uri)
    except ValueError:
        raise ValueError(f"{uri!r} is not an MLflow tracking URI; {_URI_HINT}, file:/PATH or /PATH") from None


def _check_label(value: str) -> str:
    if not value.strip() or len(value) > 250 or any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} is not a usable name; use 1-250 printable characters")
    return value


Label = Annotated[str, AfterValidator(_check_label)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=_Strict)


class MlflowSpec(_Strict):
    """One MLflow run per job, a nested run per site."""

    enabled: bool = Field(True, description="false: no MLflow for this job, even when the server names one")
    tracking_uri: Annotated[str, AfterValidator(check_tracking_uri)] | None = Field(
        None, description="The MLflow tracking server, http://HOST:PORT or https://… (default: the server's)")
    experiment: Label | None = Field(None, description="The MLflow experiment (default: the job's name)")


class LocalMlflowSpec(MlflowSpec):
    """`local/metrics.yml`'s MLflow: the server's operator may also name a folder on the server."""

    tracking_uri: Annotated[str, AfterValidator(check_local_tracking_uri)] | None = Field(
        None, description="The MLflow tracking server (http://HOST:PORT, https://…) or a folder (file:/PATH, /PATH)")


class WandbSpec(_Strict):
    """Weights & Biases runs written offline on the server (`wandb sync` them later), a run per site."""

    enabled: bool = Field(True, description="false: no W&B for this job, even when the server asks for it")
    mode: Literal["offline"] = Field("offline", description="Only offline: the runs stay on the server")
    project: Label | None = Field(None, description="The W&B project (default: the job's name)")


def _merged(job: S | None, server: S | None) -> S | None:
    """The job's keys over the server's, for one exporter's settings (None: neither names it)."""
    if job is None or server is None:
        return job or server
    named = {**server.model_dump(exclude_unset=True), **job.model_dump(exclude_unset=True)}
    return cast(S, type(job).model_construct(**named))


class MetricsSpec(_Strict):
    """Where the job's metrics go besides `flctl job metrics` (job.yml's `metrics`)."""

    tensorboard: bool | None = Field(
        None, description="TensorBoard event files in the job's tb/ folder, one run per site (default: true)")
    mlflow: MlflowSpec | None = Field(None, description="An MLflow tracking server to log to")
    wandb: WandbSpec | None = Field(None, description="Weights & Biases runs in offline mode (the mlops extra)")

    def over(self, defaults: MetricsSpec) -> MetricsSpec:
        """This job's choices, key by key over the server's `defaults` (what the job does not name)."""
        return MetricsSpec.model_construct(
            tensorboard=self.tensorboard if self.tensorboard is not None else defaults.tensorboard,
            mlflow=_merged(self.mlflow, defaults.mlflow), wandb=_merged(self.wandb, defaults.wandb))

    def exporters(self) -> list[str]:
        """The exporters these choices turn on, by registry name (MLflow only with a tracking URI)."""
        on = ["tensorboard"] if self.tensorboard is not False else []
        if self.mlflow is not None and self.mlflow.enabled and self.mlflow.tracking_uri:
            on.append("mlflow")
        if self.wandb is not None and self.wandb.enabled:
            on.append("wandb")
        return on


class LocalMetricsSpec(MetricsSpec):
    """The server's `local/metrics.yml`: the same keys, what a job that names nothing gets."""

    mlflow: LocalMlflowSpec | None = Field(
        None, description="The MLflow tracking server jobs log to unless they name another")
    job_tracking_uri: bool = Field(
        True, description="false: a job may not name a tracking server of its own (the server would connect wherever "
        "it says); it gets this file's, and its log says so")
