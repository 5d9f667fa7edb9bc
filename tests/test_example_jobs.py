"""The example jobs in playbooks/jobs: they load, and their training code does what it says."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from flctl.node.jobs.job_spec import load_job
from flctl.node.wire.tensors import decode, encode
from flctl.node.workflows.aggregation import WeightedSum

from .conftest import ROOT

JOBS = ROOT / "playbooks" / "jobs"


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


@pytest.mark.parametrize("folder", sorted(p for p in JOBS.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_example_jobs_load(folder):
    """Every example job folder passes load_job, and its name is its folder's name."""
    # Prepare / Execute
    loaded = load_job(folder)
    # Assert
    assert loaded.spec.name == folder.name
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
