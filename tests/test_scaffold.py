"""SCAFFOLD (option II) against a plain numpy reference: 3 sites of different sizes, 3 rounds; its control variate
restored on resume; the Client API's torch correction and update end a simulated job on the reference model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.node.jobs.tasks import SCAFFOLD_C, SCAFFOLD_DC, Task, TaskResult
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.scaffold import Scaffold, ScaffoldArgs
from flctl.node.workflows.state import WorkflowState

from .federation import FLCTL
from .job_folders import workflow_job
from .test_fedavg import Site
from .test_workflow_state import StatefulFederation

TARGETS = {"site-1": np.array([1.0, -2.0]), "site-2": np.array([3.0, 0.0]), "site-3": np.array([-1.0, 4.0])}
CURVATURE = {"site-1": 1.0, "site-2": 0.5, "site-3": 2.0}  # loss_i(w) = curvature/2 * ||w - target||²
EXAMPLES = {"site-1": 10, "site-2": 20, "site-3": 70}
STEPS, LR = 5, 0.1


def local(site: str, x: np.ndarray, c: np.ndarray, ci: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K corrected gradient steps from x; (y, c_i+) by option II."""
    y = x.copy()
    for _ in range(STEPS):
        y = y - LR * (CURVATURE[site] * (y - TARGETS[site]) + c - ci)
    return y, ci - c + (x - y) / (STEPS * LR)


def numpy_site(site: str, own: dict[str, np.ndarray]) -> Site:
    """A site training with SCAFFOLD in numpy, keeping its c_i in `own` across tasks."""

    def train(task: Task) -> TaskResult:
        x = task.params.get("w", np.zeros(2))
        c = task.params.get(SCAFFOLD_C + "w", np.zeros(2))
        y, after = local(site, x, c, own.get(site, np.zeros(2)))
        dc = after - own.get(site, np.zeros(2))
        own[site] = after
        return TaskResult(site, {"w": y, SCAFFOLD_DC + "w": dc}, EXAMPLES[site])

    return train


def three_sites() -> StatefulFederation:
    own: dict[str, np.ndarray] = {}
    return StatefulFederation({site: numpy_site(site, own) for site in TARGETS})


def reference(rounds: int, server_lr: float, x0: np.ndarray, sites: list[str] | None = None) -> np.ndarray:
    """x += lr * mean(y_i - x); c += |S|/N * mean(dc_i), all `sites` (default: the three) every round."""
    x, c = x0.copy(), np.zeros(2)
    sites = sites or list(TARGETS)
    own = {site: np.zeros(2) for site in sites}
    for _ in range(rounds):
        ys, dcs = [], []
        for site in sites:
            y, after = local(site, x, c, own[site])
            ys.append(y)
            dcs.append(after - own[site])
            own[site] = after
        x = x + server_lr * (np.mean(ys, axis=0) - x)
        c = c + 3 / 3 * np.mean(dcs, axis=0)
    return x


def scaffold(rounds: int, server_lr: float = 1.0) -> Scaffold:
    return Scaffold(ScaffoldArgs(rounds=rounds, server_lr=server_lr))


@pytest.mark.parametrize("server_lr", [1.0, 0.5])
def test_scaffold_is_exact_against_the_reference(server_lr):
    """Three sites, three rounds: the final model equals the plain reference within 1e-9; c travels with tasks."""
    # Prepare
    fed = three_sites()
    x0 = np.array([0.5, 0.5])
    # Execute
    final = scaffold(3, server_lr).run(fed, {"w": x0})
    # Assert
    np.testing.assert_allclose(final["w"], reference(3, server_lr, x0), rtol=0, atol=1e-9)
    assert set(fed.tasks[1][0].params) == {"w", SCAFFOLD_C + "w"}
    assert fed.tasks[0][0].saved_as == "" and set(fed.models["round-2"]) == {"w"}, "checkpoints hold the model only"
    plain = x0.copy()
    for _ in range(3):  # the same sites without the correction (FedAvg of plain local steps, unweighted)
        plain = np.mean([local(site, plain, np.zeros(2), np.zeros(2))[0] for site in TARGETS], axis=0)
    assert not np.allclose(final["w"], plain), "the correction changes the result"


def test_a_resumed_run_with_its_control_variate_restored_ends_as_an_uninterrupted_one():
    """Stopped after round 1 and resumed with round 1's model and c (the sites keep their c_i): the same model."""
    # Prepare
    whole, first = three_sites(), three_sites()
    x0 = {"w": np.array([0.5, 0.5])}
    scaffold(4).run(whole, dict(x0))
    scaffold(2).run(first, dict(x0))
    rest = StatefulFederation(first.site_fns)  # the same sites, their c_i kept
    resumed = scaffold(4)
    # Execute
    resumed.restore(first.states["round-1"])
    final = resumed.run(rest, first.models["round-1"], start_round=2)
    # Assert
    np.testing.assert_array_equal(final["w"], whole.models["final"]["w"])
    assert set(first.states["round-1"].arrays) == {"w"}
    with pytest.raises(WorkflowError, match="saved scaffold state is damaged"):
        resumed.restore(WorkflowState({"control_tensors": 2}, {"w": np.zeros(2)}))


def test_a_site_without_a_control_update_is_left_out_with_the_reason():
    """A plain FedAvg script answering a scaffold job is told what to send instead."""
    # Prepare
    fed = three_sites()
    fed.site_fns["site-2"] = lambda task: TaskResult("site-2", {"w": np.zeros(2)}, 1)
    # Execute
    scaffold(1).run(fed, {"w": np.array([0.5, 0.5])})
    # Assert
    assert any("site-2 failed: sent an unusable model: it sent no control-variate update (@scaffold_dc/*): its "
               "script must answer with fl.scaffold_params(net, steps, lr)" in line for line in fed.lines)
    assert WORKFLOWS["scaffold"] is Scaffold


TRAIN = """
import numpy as np
import torch

TARGETS = {"site-1": [1.0, -2.0], "site-2": [3.0, 0.0], "site-3": [-1.0, 4.0]}
CURVATURE = {"site-1": 1.0, "site-2": 0.5, "site-3": 2.0}
STEPS, LR = 5, 0.1

if __name__ == "__main__":
    import flctl.client as fl

    torch.set_num_threads(1)
    fl.init()
    while fl.running():
        model = fl.receive()
        site = fl.site_name()
        net = torch.nn.Linear(2, 1, bias=False).double()
        with torch.no_grad():  # round 0 has no model yet: start from zeros
            net.weight.copy_(torch.tensor(model.params["weight"]) if model.params else torch.zeros(1, 2))
        target = torch.tensor([TARGETS[site]], dtype=torch.float64)
        for _ in range(STEPS):
            net.zero_grad()
            (CURVATURE[site] / 2 * torch.sum((net.weight - target) ** 2)).backward()
            fl.scaffold_correct(net)
            with torch.no_grad():
                net.weight -= LR * net.weight.grad
        fl.send(fl.Model(params=fl.scaffold_params(net, STEPS, LR), num_examples=1))
"""


def test_a_simulated_torch_job_with_the_client_apis_scaffold_ends_on_the_reference(tmp_path: Path):
    """fl.scaffold_correct and fl.scaffold_params in a real torch script: the final model is the reference's
    (from zeros, within 1e-9), and the script never sees the control variate among its params."""
    # Prepare
    job = workflow_job(tmp_path, "scaffold", "scaffold", {"rounds": 3, "round_timeout_s": 120}, TRAIN, min_sites=3)
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "3", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=180, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    final = load_file(tmp_path / "ws" / "scaffold" / "models" / "final.safetensors")
    assert set(final) == {"weight"}
    np.testing.assert_allclose(final["weight"].reshape(-1), reference(3, 1.0, np.zeros(2)), rtol=0, atol=1e-9)


def test_a_round_sent_again_after_a_server_restart_gets_the_same_answer(tmp_path: Path):
    """A site keeps c_i per round: when a resumed server sends round 1 again, the site answers from the c_i it had
    after round 0, not from the one it made in its first answer to round 1."""
    # Prepare
    from flctl.node.client.script_bridge import ScriptBridge

    (tmp_path / "train.py").write_text(TRAIN)
    bridge = ScriptBridge(workdir=tmp_path, command=["python", "train.py"], env={}, site="site-1", job_id="j",
                          on_output=lambda line: None, on_metric=lambda name, value, step: None)
    bridge.start()
    try:
        x0 = {"weight": np.zeros((1, 2))}
        first = bridge.run_task(Task("train", 0, x0), timeout_s=60)
        x1 = {"weight": first.params["weight"], SCAFFOLD_C + "weight": first.params[SCAFFOLD_DC + "weight"]}
        # Execute
        once = bridge.run_task(Task("train", 1, x1), timeout_s=60)
        again = bridge.run_task(Task("train", 1, x1), timeout_s=60)
    finally:
        bridge.kill()
    # Assert
    for name in once.params:
        np.testing.assert_array_equal(again.params[name], once.params[name])
