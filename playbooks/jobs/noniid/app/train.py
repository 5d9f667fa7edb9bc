"""noniid: one training script for every job file in playbooks/jobs/noniid (fedavg, fedprox, fedopt, scaffold,
cyclic, cross-site-eval); the job file picks the server's workflow, and `--scaffold` on the command line the
site's side of SCAFFOLD.

Each site makes its own label-skewed data (data.py), trains a small MLP (net.py) for a few epochs of plain SGD
from the model it receives and answers every kind of task:
- train: the trained model (SCAFFOLD: `fl.scaffold_params`, its model and control-variate update), with the
  training loss and the trained model's accuracy on the site's own held-out examples;
- evaluate: the received model's loss and accuracy on those examples, metrics only;
- submit_model: the best model this site trained (by its held-out accuracy), for cross-site evaluation.
FedProx's term (`fl.proximal_term`, 0 unless the job sets proximal_mu) is added to every loss.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
from data import TRAIN_SAMPLES, site_data, site_number
from net import Net
from torch import nn

LEARNING_RATE = 0.05
EPOCHS = 2
BATCH = 32

Penalty = Callable[[nn.Module], torch.Tensor]
Hook = Callable[[nn.Module], None]


def new_model() -> Net:
    torch.manual_seed(0)  # every site starts from the same weights when the job sends no model yet
    return Net()


def load(params: dict[str, np.ndarray]) -> Net:
    """The model `params` holds (empty: a fresh one)."""
    model = new_model()
    if params:
        model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in params.items()})
    return model


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Loss and accuracy of `model` on (x, y)."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        labels = torch.from_numpy(y)
        loss = float(nn.functional.cross_entropy(logits, labels))
        accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    return {"loss": loss, "accuracy": accuracy}


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int, penalty: Penalty | None = None,
          after_backward: Hook | None = None) -> tuple[int, float]:
    """EPOCHS of plain SGD (by hand: torch.optim's first step imports torch._dynamo, which takes seconds);
    (steps taken, mean training loss). `penalty(model)` is added to each batch's loss; `after_backward(model)` runs
    after each backward pass (SCAFFOLD's correction)."""
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    steps, total = 0, 0.0
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), BATCH):
            batch = order[start:start + BATCH]
            model.zero_grad()
            loss = nn.functional.cross_entropy(model(xs[batch]), ys[batch])
            total += float(loss.detach())
            if penalty is not None:
                loss = loss + penalty(model)
            loss.backward()  # type: ignore[no-untyped-call]
            if after_backward is not None:
                after_backward(model)
            with torch.no_grad():
                for param in model.parameters():
                    if param.grad is not None:
                        param.add_(param.grad, alpha=-LEARNING_RATE)
            steps += 1
    return steps, total / steps


def train_round(params: dict[str, np.ndarray], site: str, round_no: int, penalty: Penalty | None = None,
                after_backward: Hook | None = None) -> tuple[Net, int, dict[str, float]]:
    """One round at `site` from `params`: (trained model, SGD steps, metrics on the site's held-out examples)."""
    x, y, test_x, test_y = site_data(site)
    model = load(params)
    steps, loss = train(model, x, y, site_number(site) * 1000 + round_no, penalty, after_backward)
    return model, steps, {"train_loss": loss, **evaluate(model, test_x, test_y)}


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def main(argv: list[str]) -> None:
    import flctl.client as fl  # imported here so tests can load train_round without a running job

    scaffold = "--scaffold" in argv
    torch.set_num_threads(1)  # each site gets one CPU; the model is small
    fl.init()
    site = fl.site_name()
    _, _, test_x, test_y = site_data(site)
    best: tuple[float, dict[str, torch.Tensor]] | None = None  # this site's best trained model and its accuracy
    while fl.running():
        model = fl.receive()
        if model is None:  # the job ended
            break
        if fl.is_evaluate():
            fl.send(fl.Model(metrics=evaluate(load(model.params), test_x, test_y), num_examples=len(test_y)))
            continue
        if fl.is_submit_model():
            if best is None:  # asked before this site trained (a cross_site_eval job alone): one round, from scratch
                net, _, metrics = train_round({}, site, 0)
                best = metrics["accuracy"], state(net)
            fl.send(fl.Model(params=best[1], metrics={"accuracy": best[0]}, num_examples=TRAIN_SAMPLES))
            continue
        net, steps, metrics = train_round(model.params, site, model.round, fl.proximal_term,
                                          fl.scaffold_correct if scaffold else None)
        if best is None or metrics["accuracy"] > best[0]:
            best = metrics["accuracy"], state(net)
        params = fl.scaffold_params(net, steps, LEARNING_RATE) if scaffold else state(net)
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=TRAIN_SAMPLES))


if __name__ == "__main__":
    main(sys.argv[1:])
