"""The example jobs in playbooks/jobs: they load, and their training code does what it says."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from flctl.console.cli.quickstart import examples
from flctl.node.jobs.job_spec import load_job
from flctl.node.wire.tensors import decode, encode
from flctl.node.workflows.aggregation import WeightedSum

from .conftest import ROOT
from .federation import FLCTL

JOBS = ROOT / "playbooks" / "jobs"
NONIID = JOBS / "noniid"


def load_script(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a job's train.py from its file without running main(); its folder is on sys.path, as when run."""
    monkeypatch.syspath_prepend(str(path.parent))
    for name in [p.stem for p in path.parent.glob("*.py")]:
        monkeypatch.delitem(sys.modules, name, raising=False)  # a sibling module (net.py) is imported fresh
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.parent.name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in [p.stem for p in path.parent.glob("*.py")]:
        monkeypatch.delitem(sys.modules, name, raising=False)  # and is not left behind for other tests
    return module


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small CNNs train fastest on one CPU thread; restore torch's setting afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(examples()))
def test_example_jobs_load(name):
    """Every example passes load_job; its job name is its folder's name, or folder-stem for a job file."""
    # Prepare
    path = examples()[name]
    # Execute
    loaded = load_job(path)
    # Assert
    assert loaded.spec.name == (path.name if path.is_dir() else f"{path.parent.name}-{path.stem}")
    assert loaded.spec.min_sites == 2


def test_hello_numpy_is_deterministic_and_its_loss_falls(monkeypatch):
    """Same site, same input, same output; averaged over two sites, each site's loss falls every round."""
    # Prepare
    script = load_script(JOBS / "hello-numpy" / "app" / "train.py", monkeypatch)
    sites = ["site-1", "site-2"]
    # Execute
    first = script.train_round({}, "site-1")
    again = script.train_round({}, "site-1")
    losses: dict[str, list[float]] = {site: [] for site in sites}
    params: dict[str, np.ndarray] = {}
    for _ in range(3):
        total = WeightedSum()
        for site in sites:
            new, metrics, n = script.train_round(params, site)
            total.add(decode(encode(new)), n, site)
            losses[site].append(metrics["loss"])
        params = total.result()
    # Assert
    assert all(np.array_equal(first[0][k], again[0][k]) for k in ("w", "b"))
    assert first[1:] == again[1:]
    assert first[0]["w"].dtype == np.float32 and first[0]["w"].shape == (4, 4)
    assert first[2] != script.train_round({}, "site-2")[2]
    assert all(a > b for site in sites for a, b in zip(losses[site], losses[site][1:], strict=False))


def test_hello_pt_lowers_its_loss(one_thread, monkeypatch):
    """Three local rounds, each from the last one's model sent through safetensors, lower the test loss."""
    # Prepare
    script = load_script(JOBS / "hello-pt" / "app" / "train.py", monkeypatch)
    params: dict[str, np.ndarray] = {}
    losses = []
    # Execute
    for round_no in range(3):
        state, metrics, n = script.train_round(params, "site-1", round_no)
        params = decode(encode(state))
        losses.append(metrics["loss"])
    # Assert
    assert n == 512
    assert losses[2] < losses[0] - 0.05
    assert 10_000 < sum(v.size for v in params.values()) < 50_000
    assert set(metrics) == {"loss", "accuracy"}


def test_hello_pt_sites_start_from_the_same_model(one_thread, monkeypatch):
    """Round 0 at two sites starts from one initial model (torch.manual_seed(0) before init)."""
    # Prepare
    script = load_script(JOBS / "hello-pt" / "app" / "train.py", monkeypatch)
    # Execute
    a, b = script.new_model().state_dict(), script.new_model().state_dict()
    # Assert
    assert all(bool((a[k] == b[k]).all()) for k in a)


def test_noniid_examples_cover_every_workflow_the_issue_names():
    """One noniid job file per workflow (FedProx and cross-site evaluation as fedavg's options), all one app."""
    # Prepare / Execute
    jobs = {path.stem: load_job(path) for path in NONIID.glob("*.yml")}
    # Assert
    assert {name: job.spec.workflow.type for name, job in jobs.items()} == {
        "fedavg": "fedavg", "fedprox": "fedavg", "fedopt": "fedopt", "scaffold": "scaffold", "cyclic": "cyclic",
        "swarm": "swarm", "cross-site-eval": "fedavg"}
    assert jobs["fedprox"].spec.workflow.args["proximal_mu"] > 0
    assert jobs["fedopt"].spec.workflow.args["optimizer"] == "adam"
    assert jobs["cross-site-eval"].spec.workflow.args["cross_site_eval"] is True
    assert all(job.spec.workflow.args.get("evaluate_every") for name, job in jobs.items()
               if name in ("fedavg", "fedprox", "fedopt", "scaffold"))
    assert jobs["scaffold"].spec.app.command == ["python", "train.py", "--scaffold"]


def test_noniid_sites_hold_label_skewed_data_from_a_seed(monkeypatch):
    """Each site's labels follow its own Dirichlet(0.3) shares: the same every time, and far from uniform."""
    # Prepare
    data = load_script(NONIID / "app" / "data.py", monkeypatch)
    # Execute
    first, again = data.site_data("site-1"), data.site_data("site-1")
    counts = {site: np.bincount(data.site_data(site)[1], minlength=data.CLASSES) for site in ("site-1", "site-2")}
    # Assert
    assert data.ALPHA == 0.3
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    for site, count in counts.items():
        top_two = np.sort(count)[-2:].sum() / count.sum()
        assert top_two > 0.5, (site, count)  # uniform labels would give 0.2
    assert not np.array_equal(counts["site-1"], counts["site-2"])


def simulate(job: Path, workspace: Path) -> Path:
    """`flctl simulate JOB -n 3`; the job's results folder, once it FINISHED."""
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "-w", str(workspace)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FINISHED" in out.stdout + out.stderr
    result = json.loads(next(workspace.glob("*/simulation.json")).read_text())
    assert result["status"] == "FINISHED" and result["sites"] == 3
    return Path(result["job_dir"])


def mean_by_round(job_dir: Path, name: str) -> list[float]:
    """The sites' mean of metric `name` for each round that recorded it, in round order."""
    values: dict[int, list[float]] = {}
    for row in json.loads((job_dir / "metrics.json").read_text()):
        if row["name"] == name:
            values.setdefault(row["round"], []).append(row["value"])
    return [sum(v) / len(v) for _, v in sorted(values.items())]


@pytest.mark.parametrize("job", ["fedavg", "fedprox", "fedopt", "scaffold"])
def test_noniid_training_jobs_finish_and_the_global_models_accuracy_rises(job, tmp_path):
    """`flctl simulate playbooks/jobs/noniid/JOB.yml -n 3` FINISHES; the global model evaluated at the sites (val_*)
    is more accurate after the last round than at the first evaluation, and its loss lower."""
    # Prepare / Execute
    job_dir = simulate(NONIID / f"{job}.yml", tmp_path)
    # Assert
    accuracy, loss = mean_by_round(job_dir, "val_accuracy"), mean_by_round(job_dir, "val_loss")
    assert len(accuracy) == 3  # evaluate_every 2 in 6 rounds
    assert accuracy[-1] > accuracy[0] + 0.05, accuracy
    assert loss[-1] < loss[0], loss
    assert (job_dir / "models" / "final.safetensors").is_file()


@pytest.mark.parametrize("job", ["cyclic", "swarm"])
def test_noniid_jobs_without_a_server_average_finish_and_their_loss_falls(job, tmp_path):
    """The cyclic job (the model travels) and the swarm job (a site averages) FINISH; the sites' held-out loss falls
    from the first round to the last."""
    # Prepare / Execute
    job_dir = simulate(NONIID / f"{job}.yml", tmp_path)
    # Assert
    loss = mean_by_round(job_dir, "loss")
    assert len(loss) == 4
    assert loss[-1] < loss[0] - 0.1, loss


def test_noniid_cross_site_eval_shows_each_site_its_own_model_is_best_on_its_own_data(tmp_path):
    """The cross-site job FINISHES with a 3 x 4 matrix; with skewed labels each site's own model beats the other
    sites' models on that site's data."""
    # Prepare / Execute
    job_dir = simulate(NONIID / "cross-site-eval.yml", tmp_path)
    # Assert
    report = json.loads((job_dir / "reports" / "cross_site_eval.json").read_text())
    matrix = report["metrics"]
    assert sorted(matrix) == ["site-1", "site-2", "site-3"]
    assert all(sorted(row) == ["global", "site-1", "site-2", "site-3"] for row in matrix.values())
    for site, row in matrix.items():
        others = [row[model]["accuracy"] for model in ("site-1", "site-2", "site-3") if model != site]
        assert row[site]["accuracy"] > max(others), (site, row)
