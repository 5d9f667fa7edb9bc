"""Metrics where data scientists look: on a real local federation, the metrics of `fl.log` and of each site's
answers reach TensorBoard event files (one run per site, read back with tensorboard's own reader) and an MLflow
tracking server (a real `mlflow server` on 127.0.0.1, read back with MLflow's client); `flctl job metrics` prints
them, and an MLflow server that cannot be reached leaves the job finished, saying so in its log."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .federation import Federation, free_port, make_federation, running

SCRIPT = """
import flctl.client as fl

fl.init()
writer = fl.summary_writer()                            # TensorBoard's SummaryWriter, through fl.log
while fl.running():
    model = fl.receive()
    bump = 0.5 if fl.site_name() == "site-2" else 0.0
    loss = 1.0 / (model.round + 1) + bump
    writer.add_scalar("train_loss", loss, global_step=model.round * 10)
    fl.send(fl.Model(params=model.params, metrics={"accuracy": 0.25 * (model.round + 1) + bump}, num_examples=1))
"""


def metrics_job(root: Path, name: str, metrics: str = "") -> Path:
    """A two-round FedAvg job over both sites whose script logs `train_loss` (fl.summary_writer) and answers
    with `accuracy`."""
    folder = root / name
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "train.py").write_text(SCRIPT)
    (folder / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 2, "
                                    f"round_timeout_s: 60}}}}\nmin_sites: 2\n{metrics}")
    return folder


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running(make_federation(tmp_path_factory.mktemp("fed"))) as federation:
        yield federation


def run_job(fed: Federation, folder: Path) -> str:
    out = fed.flctl("job", "submit", folder, "--watch", "--json", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr + fed.logs()
    return str(json.loads(out.stdout)["id"])


def job_dir(fed: Federation, job_id: str) -> Path:
    return fed.kit("localhost") / "workspace" / "jobs" / job_id


def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """`check()`'s value once it is truthy (the exporter works beside the job, a moment behind it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run folder, read with tensorboard's own reader: tag -> [(step, value)]; none
    while the exporter (a moment behind the job) has not made the folder yet."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run.is_dir():
        return {}
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


EXPECTED = {"site-1": {"train_loss": [(0, 1.0), (10, 0.5)], "accuracy": [(0, 0.25), (1, 0.5)]},
            "site-2": {"train_loss": [(0, 1.5), (10, 1.0)], "accuracy": [(0, 0.75), (1, 1.0)]}}
"""What SCRIPT reports, by site and metric: [(step, value)] (the writer's at its steps, the answers' at the
rounds)."""


@pytest.fixture(scope="module")
def plain_job(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The id of a finished job that names no metrics section."""
    return run_job(fed, metrics_job(tmp_path_factory.mktemp("jobs"), "plain-job"))


def test_metrics_reach_tensorboard_one_run_per_site(fed: Federation, plain_job: str):
    """A job that names nothing: each site's logged values (at the script's steps) and its answers' metrics (at
    the rounds) are in WORKSPACE/jobs/<id>/tb/<site>/."""
    pytest.importorskip("tensorboard", reason="reading event files needs the mlops extra: bash scripts/setup.sh --all")
    # Execute
    tb = job_dir(fed, plain_job) / "tb"
    seen = wait_for(lambda: (found := {site: scalars(tb / site) for site in EXPECTED}) == EXPECTED and found)
    # Assert
    assert seen == EXPECTED, f"{seen} in {sorted(p.name for p in tb.iterdir()) if tb.is_dir() else 'no tb/'}"


def test_job_metrics_prints_a_row_per_round_and_site(fed: Federation, plain_job: str):
    """flctl job metrics: to a pipe, tab-separated rows (round from 1, site, a column per metric: the round's last
    value); --json and --csv every value with its round index and step; --site one site's."""
    # Execute
    table = fed.flctl("job", "metrics", plain_job)
    as_json = fed.flctl_json("job", "metrics", plain_job)
    as_csv = fed.flctl("job", "metrics", plain_job, "--csv", "--site", "site-2")
    both = fed.flctl("job", "metrics", plain_job, "--csv", "--json")
    # Assert
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"# metrics of job {plain_job}"
    header = lines[1].split("\t")
    assert header[:2] == ["round", "site"] and sorted(header[2:]) == ["accuracy", "train_loss"]
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[2:]]
    assert [(r["round"], r["site"], r["train_loss"], r["accuracy"]) for r in rows] == [
        ("1", "site-1", "1", "0.25"), ("1", "site-2", "1.5", "0.75"),
        ("2", "site-1", "0.5", "0.5"), ("2", "site-2", "1", "1")]
    found = sorted((v["site"], v["name"], v["step"] if v["step"] is not None else v["round"], v["value"])
                   for v in as_json)
    assert found == sorted((site, name, step, value) for site, named in EXPECTED.items()
                           for name, points in named.items() for step, value in points)
    assert {(v["name"], v["step"] is None) for v in as_json} == {("train_loss", False), ("accuracy", True)}
    assert as_csv.returncode == 0, as_csv.stderr
    csv_lines = as_csv.stdout.splitlines()
    assert csv_lines[0] == "round,site,name,step,value"
    assert sorted(csv_lines[1:]) == ["0,site-2,accuracy,,0.75", "0,site-2,train_loss,0,1.5",
                                     "1,site-2,accuracy,,1.0", "1,site-2,train_loss,10,1.0"]
    assert both.returncode == 2 and "choose one" in both.stderr


def test_job_download_brings_the_tensorboard_runs(fed: Federation, plain_job: str, tmp_path: Path):
    """flctl job download: the tb/ folder, a run per site, beside models and metrics.json."""
    # Prepare
    wait_for(lambda: all((job_dir(fed, plain_job) / "tb" / site).is_dir() for site in EXPECTED))
    # Execute
    out = fed.flctl("job", "download", plain_job, "-o", tmp_path)
    # Assert
    assert out.returncode == 0, out.stderr
    runs = sorted(p.parent.name for p in (tmp_path / plain_job / "tb").glob("*/events.out.tfevents.*"))
    assert runs == ["site-1", "site-2"]
    if importlib.util.find_spec("tensorboard") is not None:
        assert scalars(tmp_path / plain_job / "tb" / "site-1") == EXPECTED["site-1"]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (a SQLite store, artifacts served from a temporary folder), killed by
    its process group after the module's tests."""
    pytest.importorskip("mlflow", reason="needs the mlops extra: bash scripts/setup.sh --all")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            assert server.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def test_metrics_reach_mlflow_one_run_per_job_and_a_nested_run_per_site(fed: Federation, tmp_path: Path,
                                                                       mlflow_server: str):
    """The job's run holds the workflow's arguments as params and the final model as an artifact; each site's
    nested run holds its metrics at their steps; every run ends FINISHED."""
    from mlflow.tracking import MlflowClient

    # Execute
    job_id = run_job(fed, metrics_job(tmp_path, "mlflow-job", f"metrics: {{mlflow: {{tracking_uri: '{mlflow_server}', "
                                                             "experiment: flctl-tests}}\n"))
    # Assert
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = wait_for(lambda: client.get_experiment_by_name("flctl-tests"))
    assert experiment is not None, fed.flctl("job", "logs", job_id, "--site", "server").stdout

    def ended_runs() -> list:  # type: ignore[type-arg]
        runs = client.search_runs([experiment.experiment_id], f"tags.`flctl.job_id` = '{job_id}'")
        return runs if len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs) else []

    runs = wait_for(ended_runs)
    assert runs, f"{client.search_runs([experiment.experiment_id])}; {fed.flctl('job', 'logs', job_id).stdout}"
    [job_run] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    sites = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == job_run.info.run_id}
    assert sorted(sites) == ["site-1", "site-2"]
    assert job_run.data.params == {"workflow": "fedavg", "sites": "site-1,site-2", "rounds": "2",
                                   "round_timeout_s": "60"}
    assert [a.path for a in client.list_artifacts(job_run.info.run_id, "model")] == ["model/final.safetensors"]
    history = {site: {name: sorted((m.step, round(m.value, 6))
                                   for m in client.get_metric_history(run.info.run_id, name))
                      for name in ("train_loss", "accuracy")} for site, run in sites.items()}
    assert history == {"site-1": {"train_loss": [(0, 1.0), (10, 0.5)], "accuracy": [(0, 0.25), (1, 0.5)]},
                       "site-2": {"train_loss": [(0, 1.5), (10, 1.0)], "accuracy": [(0, 0.75), (1, 1.0)]}}


def test_an_unreachable_mlflow_server_does_not_fail_the_job(fed: Federation, tmp_path: Path):
    """Nothing listens at the tracking URI: the job finishes, its log says the export failed, and its metrics are
    still in flctl."""
    pytest.importorskip("mlflow", reason="needs the mlops extra: bash scripts/setup.sh --all")
    # Prepare
    nowhere = f"http://127.0.0.1:{free_port()}"
    # Execute
    job_id = run_job(fed, metrics_job(tmp_path, "lost-mlflow", f"metrics: {{mlflow: {{tracking_uri: '{nowhere}'}}}}\n"))
    # Assert
    said = wait_for(lambda: [line for line in fed.flctl("job", "logs", job_id, "--site", "server").stdout.splitlines()
                             if "metrics export to MLflow" in line])
    assert said and f"metrics export to MLflow at {nowhere} failed" in said[0], said
    assert f"its metrics stay in flctl (flctl job metrics {job_id})" in said[0] or "stay in flctl" in said[0]
    assert fed.flctl_json("job", "show", job_id)["status"] == "FINISHED"


def test_a_bad_tracking_uri_is_refused_at_submit(fed: Federation, tmp_path: Path):
    """A tracking URI a job may not name is refused before anything is sent: exit 2, the field named."""
    # Execute
    out = fed.flctl("job", "submit", metrics_job(tmp_path, "bad-uri", "metrics:\n  mlflow: {tracking_uri: "
                                                                     "'file:/etc/mlruns'}\n"))
    # Assert
    assert out.returncode == 2, out.stdout + out.stderr
    assert "metrics.mlflow.tracking_uri: 'file:/etc/mlruns' is not an MLflow tracking URI a job may name" in out.stderr


def wandb_history(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Each offline W&B run under `folder`, read from its .wandb file (a LevelDB-style log of W&B's protobuf
    records): run name -> metric -> [(flctl_step, value)]."""
    from wandb.proto import wandb_internal_pb2 as wandb_pb

    runs: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for path in sorted(folder.glob("offline-run-*/run-*.wandb")):
        name, rows = "", []
        for record in _wandb_records(path.read_bytes(), wandb_pb.Record):
            if record.WhichOneof("record_type") == "run":
                name = record.run.display_name
            if record.WhichOneof("record_type") == "history":
                rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        history: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            for key, value in row.items():
                if not key.startswith("_") and key != "flctl_step":
                    history.setdefault(key, []).append((row["flctl_step"], round(value, 6)))
        runs[name] = {key: sorted(values) for key, values in history.items()}
    return runs


def _wandb_records(data: bytes, record_type: type) -> Iterator:  # type: ignore[type-arg]
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        parts, pos = parts + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = record_type()
            record.ParseFromString(parts)
            parts = b""
            yield record


def test_metrics_reach_wandb_offline_one_run_per_site(fed: Federation, tmp_path: Path):
    """wandb: {mode: offline}: a W&B run per site in WORKSPACE/jobs/<id>/wandb/, each metric against flctl_step."""
    pytest.importorskip("wandb", reason="needs the mlops extra: bash scripts/setup.sh --all")
    # Execute
    job_id = run_job(fed, metrics_job(tmp_path, "wandb-job", "metrics: {tensorboard: false, wandb: {mode: offline}}\n"))
    # Assert
    folder = job_dir(fed, job_id) / "wandb"
    expected = {"site-1": {"train_loss": [(0, 1.0), (10, 0.5)], "accuracy": [(0, 0.25), (1, 0.5)]},
                "site-2": {"train_loss": [(0, 1.5), (10, 1.0)], "accuracy": [(0, 0.75), (1, 1.0)]}}
    seen = wait_for(lambda: (found := wandb_history(folder)) == expected and found, timeout=60)
    assert seen == expected, (wandb_history(folder), fed.flctl("job", "logs", job_id, "--site", "server").stdout)
    assert not (job_dir(fed, job_id) / "tb").exists()


def test_a_simulation_writes_tensorboard_runs_too(tmp_path: Path):
    """flctl simulate: the run's metrics in WORKSPACE/<job>/tb/<site>/ as on a server, beside metrics.json."""
    pytest.importorskip("tensorboard", reason="reading event files needs the mlops extra: bash scripts/setup.sh --all")
    from .federation import FLCTL

    # Execute
    out = subprocess.run([FLCTL, "simulate", metrics_job(tmp_path, "sim-job"), "-n", "2", "-w", tmp_path / "ws"],
                         capture_output=True, text=True, timeout=120, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    [job] = [p for p in (tmp_path / "ws").iterdir() if (p / "tb").is_dir()]
    assert {site: scalars(job / "tb" / site) for site in EXPECTED} == EXPECTED


def test_an_export_the_server_restarts_goes_on_where_it_left_off(tmp_path: Path, mlflow_server: str):
    """The feeder stopped with the daemon (its runs left running) and started again for the resumed job: the same
    MLflow runs go on, nothing is exported twice (TensorBoard either), and the runs end with the job."""
    from mlflow.tracking import MlflowClient

    from flctl.node.jobs.job_status import JobStatus, SiteState
    from flctl.node.jobs.metrics_spec import MetricsSpec
    from flctl.node.server.metrics_export.base import JobContext
    from flctl.node.server.metrics_export.feeder import MetricsTail, Progress, follow
    from flctl.node.server.metrics_export.guard import open_exporters
    from flctl.node.server.store import JobRow, Store

    # Prepare
    store = Store(tmp_path / "server.db")
    store.add_job(JobRow("job1", "resumed", JobStatus.RUNNING, "admin", "org", "lead", 0.0, 0.0, 0.0, 0, 2, "fedavg",
                         1, ["site-1"], "", "", "sha", {}))
    store.set_site_states("job1", ["site-1"], SiteState.WORKING)
    store.add_metrics("job1", "site-1", 0, [("loss", 1.0, None), ("lr", 0.1, 0)])
    store.flush()
    job_dir = tmp_path / "jobs" / "job1"
    job = JobContext("job1", "resumed", job_dir, ["site-1"], "fedavg", {"rounds": 2})
    spec = MetricsSpec.model_validate({"mlflow": {"tracking_uri": mlflow_server, "experiment": "restarts"}})
    lines: list[str] = []

    def run_feeder(stop_at_once: bool) -> str:
        exporters = open_exporters(spec, job, lines.append, "flctl")
        stopped = threading.Event()
        if stop_at_once:
            stopped.set()  # the daemon is gone: one last read, then out
        tail = MetricsTail(store.path, "job1")
        status = follow(tail, exporters, Progress(job_dir), stopped)
        tail.close()
        for exporter in exporters:
            exporter.close(status)
        return status

    # Execute
    first = run_feeder(stop_at_once=True)
    store.add_metrics("job1", "site-1", 1, [("loss", 0.5, None), ("lr", 0.05, 1)])
    store.update_job("job1", status=JobStatus.FINISHED)
    store.set_site_states("job1", ["site-1"], SiteState.FINISHED)
    store.flush()
    second = run_feeder(stop_at_once=False)
    # Assert
    assert (first, second) == ("", "FINISHED"), lines
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("restarts")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["resumed-job1", "site-1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    [site_run] = [r for r in runs if r.info.run_name == "site-1"]
    history = client.get_metric_history(site_run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5)]
    if importlib.util.find_spec("tensorboard") is not None:
        assert scalars(job_dir / "tb" / "site-1") == {"loss": [(0, 1.0), (1, 0.5)], "lr": [(0, 0.1), (1, 0.05)]}
    store.close()


def test_an_export_after_the_store_was_rebuilt_starts_from_its_first_value(tmp_path: Path):
    """The job's saved progress points past the newest row (flctl node recover renumbered them): the export starts
    over from the first row rather than skip the new ones, and says so."""
    pytest.importorskip("tensorboard", reason="reading event files needs the mlops extra: bash scripts/setup.sh --all")
    from flctl.node.jobs.job_status import JobStatus
    from flctl.node.jobs.metrics_spec import MetricsSpec
    from flctl.node.server.metrics_export import feeder
    from flctl.node.server.metrics_export.base import JobContext
    from flctl.node.server.metrics_export.guard import open_exporters
    from flctl.node.server.store import JobRow, Store

    # Prepare
    store = Store(tmp_path / "server.db")
    store.add_job(JobRow("job1", "rebuilt", JobStatus.RUNNING, "admin", "org", "lead", 0.0, 0.0, 0.0, 0, 2,
                         "fedavg", 1, ["site-1"], "", "", "sha", {}))
    store.add_metrics("job1", "site-1", 3, [("loss", 0.25, None)])
    job_dir = tmp_path / "jobs" / "job1"
    feeder.Progress(job_dir).save(500)  # from the store before the rebuild
    job = JobContext("job1", "rebuilt", job_dir, ["site-1"], "fedavg")
    lines: list[str] = []
    stopped = threading.Event()
    stopped.set()
    # Execute
    exporters = open_exporters(MetricsSpec(), job, lines.append, "flctl")
    tail = feeder.MetricsTail(store.path, "job1")
    feeder.follow(tail, exporters, feeder.Progress(job_dir), stopped, lines.append)
    tail.close()
    for exporter in exporters:
        exporter.close("")
    # Assert
    assert scalars(job_dir / "tb" / "site-1") == {"loss": [(3, 0.25)]}
    assert any("store was rebuilt" in line for line in lines), lines
    store.close()
