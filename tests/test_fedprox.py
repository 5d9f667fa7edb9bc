"""FedProx: the proximal term against its formula, mu sent with each task, and a simulated job whose sites add the
term ending with the model a plain reference computes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from flctl.node.client.fedprox import proximal_term
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs

from .federation import FLCTL
from .job_folders import workflow_job
from .test_fedavg import FakeFederation, adds


def linear(weight: list[list[float]], bias: list[float]) -> torch.nn.Linear:
    net = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight, dtype=torch.float64))
        net.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return net


def test_the_term_and_its_gradient_follow_the_formula():
    """(mu/2) * sum ||w - w_g||², and its gradient mu * (w - w_g), on fixed numbers."""
    # Prepare
    net = linear([[1.0, 2.0], [3.0, -1.0]], [0.5, -0.5])
    anchor = {"weight": np.array([[0.0, 1.0], [1.0, 1.0]]), "bias": np.array([0.5, 0.5])}
    # Execute
    term = proximal_term(net, anchor, 0.1)
    term.backward()
    # Assert
    w, b = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([0.5, -0.5])
    want = 0.1 / 2 * (np.sum((w - anchor["weight"]) ** 2) + np.sum((b - anchor["bias"]) ** 2))
    assert float(term.detach()) == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(net.weight.grad.numpy(), 0.1 * (w - anchor["weight"]), atol=1e-12)
    np.testing.assert_allclose(net.bias.grad.numpy(), 0.1 * (b - anchor["bias"]), atol=1e-12)


def test_mu_zero_or_no_global_model_adds_nothing():
    """mu 0 gives 0; parameters the global model lacks (an empty round-0 model) are left out."""
    # Prepare
    net = linear([[1.0, 2.0], [3.0, -1.0]], [0.5, -0.5])
    # Execute / Assert
    assert float(proximal_term(net, {"weight": np.zeros((2, 2))}, 0.0)) == 0.0
    assert float(proximal_term(net, {}, 0.5)) == 0.0
    assert float(proximal_term(net, {"bias": np.zeros(2)}, 2.0).detach()) == pytest.approx(0.5 ** 2 + 0.5 ** 2)


def test_fedavg_sends_proximal_mu_with_each_task_only_when_set():
    """proximal_mu 0.01 reaches every task's meta; unset, the meta is FedAvg's as before."""
    # Prepare
    with_mu, without = FakeFederation({"a": adds("a", 1.0, 1)}), FakeFederation({"a": adds("a", 1.0, 1)})
    # Execute
    FedAvg(FedAvgArgs(rounds=2, proximal_mu=0.01)).run(with_mu, None)
    FedAvg(FedAvgArgs(rounds=2)).run(without, None)
    # Assert
    assert [task.meta for task, _, _ in with_mu.tasks] == [{"rounds": 2, "proximal_mu": 0.01}] * 2
    assert [task.meta for task, _, _ in without.tasks] == [{"rounds": 2}] * 2


TRAIN = """
import numpy as np
import torch

TARGETS = {"site-1": [1.0, -1.0], "site-2": [3.0, 2.0]}


def local_training(params, site, term):
    \"\"\"Ten steps of plain gradient descent on (w - target)² plus `term(net)`, from `params`.\"\"\"
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(params["weight"]) if params else torch.zeros(1, 2, dtype=torch.float64))
    target = torch.tensor([TARGETS[site]], dtype=torch.float64)
    for _ in range(10):
        net.zero_grad()
        loss = torch.sum((net.weight - target) ** 2) + term(net)
        loss.backward()
        with torch.no_grad():
            net.weight -= 0.1 * net.weight.grad
    return {"weight": net.weight.detach().numpy().copy()}


if __name__ == "__main__":
    import flctl.client as fl

    torch.set_num_threads(1)
    fl.init()
    while fl.running():
        model = fl.receive()
        params = local_training(model.params, fl.site_name(), fl.proximal_term)
        fl.send(fl.Model(params=params, num_examples=1 if fl.site_name() == "site-1" else 3))
"""


def reference(local_training: Any, mu: float) -> dict[str, np.ndarray]:
    """Three rounds of FedAvg over site-1 (1 example) and site-2 (3), their loss plus (mu/2) * ||w - w_global||²
    written out plainly (nothing before round 0's average)."""
    model: dict[str, np.ndarray] = {}
    for _ in range(3):
        anchor = {k: v.copy() for k, v in model.items()}

        def term(net: torch.nn.Module, anchor: dict[str, np.ndarray] = anchor) -> torch.Tensor:
            if not anchor:
                return torch.zeros((), dtype=torch.float64)
            return mu / 2 * torch.sum((net.weight - torch.tensor(anchor["weight"])) ** 2)

        answers = [(local_training(model, site, term), n) for site, n in (("site-1", 1), ("site-2", 3))]
        model = {"weight": sum(p["weight"] * n for p, n in answers) / 4}
    return model


def test_a_simulated_fedprox_job_ends_with_the_reference_model(tmp_path: Path):
    """Two torch sites add fl.proximal_term to their loss; the final model equals a plain loop computing the term
    as (mu/2) * ||w - w_global||², within 1e-9."""
    # Prepare
    job = workflow_job(tmp_path, "prox", "fedavg", {"rounds": 3, "proximal_mu": 0.5, "round_timeout_s": 120}, TRAIN)
    namespace: dict[str, object] = {}
    exec(compile(TRAIN, "train.py", "exec"), namespace)  # local_training, without the __main__ part
    local_training = namespace["local_training"]
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=180, check=False)
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    model = reference(local_training, mu=0.5)
    final = load_file(tmp_path / "ws" / "prox" / "models" / "final.safetensors")
    np.testing.assert_allclose(final["weight"], model["weight"], rtol=0, atol=1e-9)
    assert not np.allclose(reference(local_training, mu=0.0)["weight"], model["weight"]), "the term matters here"
