"""job.yml's `metrics` section and the server's local/metrics.yml: what is accepted, what a bad one says."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.metrics_spec import LocalMetricsSpec, MetricsSpec

JOB = """\
api_version: 1
name: hello
workflow: {type: fedavg, args: {rounds: 1}}
"""


def job_with(tmp_path: Path, metrics: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "train.py").write_text("print('train')\n")
    (tmp_path / "job.yml").write_text(JOB + metrics)
    return tmp_path


def test_a_job_names_nothing_and_gets_tensorboard(tmp_path):
    """Without a metrics section a job exports to TensorBoard only."""
    # Execute
    spec = load_job(job_with(tmp_path, "")).spec.metrics
    # Assert
    assert spec.exporters() == ["tensorboard"]


def test_a_job_names_mlflow_and_wandb(tmp_path):
    """An http tracking URI, an experiment and W&B offline are taken as written."""
    # Execute
    spec = load_job(job_with(tmp_path, "metrics:\n  tensorboard: false\n  mlflow: {tracking_uri: "
                             "'http://127.0.0.1:5000', experiment: study}\n  wandb: {mode: offline}\n")).spec.metrics
    # Assert
    assert spec.exporters() == ["mlflow", "wandb"]
    assert spec.mlflow is not None and (spec.mlflow.tracking_uri, spec.mlflow.experiment) == (
        "http://127.0.0.1:5000", "study")


@pytest.mark.parametrize("uri", ["ftp://host/x", "file:/etc", "/srv/mlruns", "http://", "http://host:99999",
                                 "mlflow server", "sqlite:///x.db"])
def test_a_bad_tracking_uri_is_refused_with_its_line(tmp_path, uri):
    """A job may name only an http(s) tracking server: anything else is refused at load, with line and field."""
    # Prepare
    folder = job_with(tmp_path, f"metrics:\n  mlflow:\n    tracking_uri: '{uri}'\n")
    # Execute
    with pytest.raises(JobError) as info:
        load_job(folder)
    # Assert
    [problem] = [str(p) for p in info.value.problems]
    assert "job.yml:6: metrics.mlflow.tracking_uri:" in problem
    assert "is not an MLflow tracking URI a job may name; use http://HOST:PORT" in problem


@pytest.mark.parametrize(("metrics", "expected"), [
    ("metrics: {wandb: {mode: online}}\n", "metrics.wandb.mode: 'online' is not allowed; use 'offline'"),
    ("metrics: {mlflow: {uri: x}}\n", "metrics.mlflow.uri: unknown key 'uri'; allowed here: enabled, tracking_uri, "
                                      "experiment"),
    ("metrics: {tensorboard: maybe}\n", "metrics.tensorboard: expected true or false"),
    ("metrics: {mlflow: {experiment: ''}}\n", "metrics.mlflow.experiment: '' is not a usable name"),
])
def test_other_mistakes_name_the_field(tmp_path, metrics, expected):
    """Each mistake in the section is one sentence naming its field."""
    # Execute
    with pytest.raises(JobError) as info:
        load_job(job_with(tmp_path, metrics))
    # Assert
    assert expected in str(info.value.problems[0])


def test_the_job_s_keys_win_over_the_server_s():
    """The server's defaults fill what the job does not name, key by key; a job can turn the server's MLflow off."""
    # Prepare
    server = LocalMetricsSpec.model_validate({"tensorboard": False, "mlflow": {"tracking_uri": "file:/srv/mlruns",
                                                                                "experiment": "all-jobs"}})
    # Execute
    own_experiment = MetricsSpec.model_validate({"mlflow": {"experiment": "mine"}}).over(server)
    off = MetricsSpec.model_validate({"mlflow": {"enabled": False}, "tensorboard": True}).over(server)
    silent = MetricsSpec().over(server)
    # Assert
    assert own_experiment.mlflow is not None
    assert (own_experiment.mlflow.tracking_uri, own_experiment.mlflow.experiment) == ("file:/srv/mlruns", "mine")
    assert own_experiment.exporters() == ["mlflow"]
    assert off.exporters() == ["tensorboard"]
    assert silent.exporters() == ["mlflow"]


def test_mlflow_without_a_tracking_uri_anywhere_is_off():
    """An experiment named with no tracking URI, in the job or the server's file, exports nothing to MLflow."""
    # Execute
    spec = MetricsSpec.model_validate({"mlflow": {"experiment": "x"}}).over(LocalMetricsSpec())
    # Assert
    assert spec.exporters() == ["tensorboard"]


def test_the_server_s_local_metrics_yml(tmp_path):
    """local/metrics.yml: absent means TensorBoard only; a folder may be named as the tracking URI; a bad key or
    URI stops the server with one sentence naming the file and field."""
    from flctl.node.config.metrics import load_metrics_defaults
    from flctl.provisioner.errors import KitError

    # Prepare
    path = tmp_path / "metrics.yml"
    # Execute
    absent = load_metrics_defaults(path)
    path.write_text("mlflow: {tracking_uri: /srv/mlruns, experiment: all}\n")
    folder = load_metrics_defaults(path)
    path.write_text("mlflow: {tracking_uri: 'ftp://x'}\n")
    with pytest.raises(KitError) as bad_uri:
        load_metrics_defaults(path)
    path.write_text("tensorbord: true\n")
    with pytest.raises(KitError) as bad_key:
        load_metrics_defaults(path)
    # Assert
    assert absent.exporters() == ["tensorboard"]
    assert folder.mlflow is not None and folder.mlflow.tracking_uri == "/srv/mlruns"
    assert str(bad_uri.value).startswith(f"{path}: mlflow.tracking_uri: 'ftp://x' is not an MLflow tracking URI")
    assert str(bad_key.value) == (f"{path}: tensorbord: unknown key 'tensorbord'; allowed here: tensorboard, mlflow, "
                                  "wandb, job_tracking_uri")


def test_a_server_can_keep_jobs_to_its_own_tracking_server(tmp_path):
    """local/metrics.yml job_tracking_uri: false: a job's own tracking URI is replaced by the server's (its other
    keys kept), or MLflow is off without one; the job's log is told either way."""
    from flctl.node.server.metrics_export.launch import export_plan

    # Prepare
    job = {"name": "j", "workflow": {"type": "fedavg", "args": {"rounds": 1}},
           "metrics": {"mlflow": {"tracking_uri": "http://10.0.0.9:5000", "experiment": "mine"}}}
    server = LocalMetricsSpec.model_validate({"job_tracking_uri": False, "mlflow": {"tracking_uri": "file:/srv/ml"}})
    # Execute
    kept, note = export_plan("id1", job, ["site-1"], tmp_path / "server.db", server)
    none, none_note = export_plan("id1", job, ["site-1"], tmp_path / "server.db",
                                  LocalMetricsSpec.model_validate({"job_tracking_uri": False}))
    allowed, no_note = export_plan("id1", job, ["site-1"], tmp_path / "server.db", LocalMetricsSpec())
    # Assert
    assert kept is not None and kept.metrics["mlflow"]["tracking_uri"] == "file:/srv/ml"
    assert kept.metrics["mlflow"]["experiment"] == "mine"
    assert "names the MLflow tracking server http://10.0.0.9:5000, but this server lets jobs use only its own" in note
    assert none is not None and "mlflow" not in LocalMetricsSpec.model_validate(none.metrics).exporters()
    assert none_note.endswith("none, so no MLflow export")
    assert allowed is not None and allowed.metrics["mlflow"]["tracking_uri"] == "http://10.0.0.9:5000"
    assert no_note == ""
