"""Metrics where data scientists look: on a real local federation, the metrics of `fl.log` and of each site's
answers reach TensorBoard event files (one run per site, read back with tensorboard's own reader) and an MLflow
tracking server (a real `mlflow server` on 127.0.0.1, read back with MLflow's client); `flctl job metrics` prints
them, and an MLflow server that cannot be reached leaves the job finished, saying so in its log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .federation import Federation, make_federation, running

SCRIPT = """
import flctl.client as fl

fl.init()
writer = None
while fl.running():
    model = fl.receive()
    bump = 0.5 if fl.site_name() == "site-2" else 0.0
    loss = 1.0 / (model.round + 1) + bump
    fl.log("train_loss", loss, step=model.round * 10)
    fl.send(fl.Model(params=model.params, metrics={"accuracy": 0.25 * (model.round + 1) + bump}, num_examples=1))
"""


def metrics_job(root: Path, name: str, metrics: str = "") -> Path:
    """A two-round FedAvg job over both sites whose script logs `train_loss` and answers with `accuracy`."""
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
    """Every scalar of a TensorBoard run folder, read with tensorboard's own reader: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_metrics_reach_tensorboard_one_run_per_site(fed: Federation, tmp_path: Path):
    """A job that names nothing: each site's logged values (at the script's steps) and its answers' metrics (at
    the rounds) are in WORKSPACE/jobs/<id>/tb/<site>/."""
    pytest.importorskip("tensorboard", reason="reading event files needs the mlops extra: bash scripts/setup.sh --all")
    # Execute
    job_id = run_job(fed, metrics_job(tmp_path, "tb-job"))
    tb = job_dir(fed, job_id) / "tb"
    expected = {"site-1": {"train_loss": [(0, 1.0), (10, 0.5)], "accuracy": [(0, 0.25), (1, 0.5)]},
                "site-2": {"train_loss": [(0, 1.5), (10, 1.0)], "accuracy": [(0, 0.75), (1, 1.0)]}}
    # Assert
    seen = wait_for(lambda: (found := {site: scalars(tb / site) for site in expected}) == expected and found)
    assert seen == expected, f"{seen} in {sorted(p.name for p in tb.iterdir()) if tb.is_dir() else 'no tb/'}"
