"""A torch script with flctl's own Client API: tensors in and out with state_dict names (app.framework: pytorch),
the final model loaded back in one line, and each metric value recorded once when it is both logged (`fl.log`)
and sent with the result (`metrics=`): in the simulator, on a real federation, and in the server's store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.server.store import JobRow, Store

from .federation import FLCTL, make_federation, running
from .nvflare_scripts import NET, initial_model

torch = pytest.importorskip("torch")

TORCH_SCRIPT = '''
import torch
import flctl.client as fl
from net import SimpleNetwork, data

fl.init()
net = SimpleNetwork()
x, y = data(fl.site_name())
while fl.running():
    model = fl.receive()
    assert all(isinstance(v, torch.Tensor) for v in model.params.values()), model.params
    net.load_state_dict(model.params)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        fl.log("epoch_loss", loss.item(), step=model.round * 3 + epoch)
    accuracy = float((net(x).argmax(1) == y).float().mean())
    fl.log("loss", loss.item())                          # the same values as the result's metrics
    fl.log("accuracy", accuracy, step=model.round)
    fl.send(fl.Model(params=net.state_dict(), metrics={"loss": loss.item(), "accuracy": accuracy, "n": len(x)},
                     num_examples=len(x)))
'''


def torch_job(root: Path, rounds: int = 2) -> Path:
    job = root / "torch-job"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(TORCH_SCRIPT)
    (job / "app" / "net.py").write_text(NET)
    initial_model(job / "model" / "initial.safetensors")
    (job / "job.yml").write_text(f"api_version: 1\nname: torch-job\nworkflow: {{type: fedavg, args: {{rounds: "
                                 f"{rounds}}}}}\nmin_sites: 2\napp: {{command: [python, train.py], framework: "
                                 "pytorch}\ninitial_model: model/initial.safetensors\n")
    return job


def _counts(rows: list[dict[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["name"])] = counts.get(str(row["name"]), 0) + 1
    return counts


def test_a_torch_script_gets_tensors_and_each_metric_is_recorded_once_in_the_simulator(tmp_path: Path) -> None:
    """2 sites x 2 rounds: loss and accuracy, logged and sent, are 4 records each (not 8); the epoch curve 12; n
    (sent only) 4. The final model's names are the state_dict's and load back into the network."""
    import flctl.client as fl

    # Execute
    out = subprocess.run([FLCTL, "simulate", str(torch_job(tmp_path)), "-n", "2", "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, timeout=180, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = tmp_path / "ws" / "torch-job"
    assert _counts(json.loads((result / "metrics.json").read_text())) == {
        "epoch_loss": 12, "loss": 4, "accuracy": 4, "n": 4}
    namespace: dict[str, object] = {}
    exec(NET, namespace)
    net = namespace["SimpleNetwork"]()  # type: ignore[operator]
    fl.load_model(result / "models" / "final.safetensors", into=net)  # strict: every state_dict key, nothing else


def test_each_metric_is_recorded_once_on_a_real_federation(tmp_path: Path) -> None:
    """The same job over mTLS: the server's store (its download's metrics.json) holds each value once, and job show's
    last metrics hold the result's values."""
    # Prepare
    (tmp_path / "fed").mkdir()
    with running(make_federation(tmp_path / "fed")) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        # Execute
        job_id = admin.submit_job(torch_job(tmp_path))
        list(admin.watch(job_id))
        info = admin.get_job(job_id)
        target = admin.download_job(job_id, tmp_path / "out")
    # Assert
    assert info.status == "FINISHED", info.error
    rows = json.loads((target / "metrics.json").read_text())
    assert _counts(rows) == {"epoch_loss": 12, "loss": 4, "accuracy": 4, "n": 4}
    assert set(info.last_metrics["site-1"]) >= {"loss", "accuracy", "n"}


def test_the_store_records_a_round_metric_already_logged_once(tmp_path: Path) -> None:
    """add_round_metrics leaves out (site, name, value) the site logged in that round; other values, rounds and
    sites are recorded."""
    # Prepare
    store = Store(tmp_path / "s.db")
    store.add_job(JobRow("j1", "n", "RUNNING", "a", "o", "lead", 0.0, 0.0, 0.0, -1, 2, "fedavg", 1, "all", "", "",
                         "sha", {}))
    store.add_metrics("j1", "a", 0, [("loss", 0.5, None), ("acc", 0.75, 3)])
    # Execute
    store.add_round_metrics("j1", 0, {"a": {"loss": 0.5, "acc": 0.75, "n": 10.0}, "b": {"loss": 0.5}})
    store.add_round_metrics("j1", 1, {"a": {"loss": 0.5}})
    # Assert
    assert store.metrics("j1") == [("a", 0, "loss", 0.5, None), ("a", 0, "acc", 0.75, 3), ("a", 0, "n", 10.0, None),
                                   ("b", 0, "loss", 0.5, None), ("a", 1, "loss", 0.5, None)]
