"""hello-pt: a small CNN learns a rule hidden in synthetic 16x16 images, across sites.

The rule (a fixed random pattern of 4x4 blocks; an image is class 1 when it correlates with
the pattern) comes from one seed, the same everywhere; each site draws its own images from a
seed made of its name, so sites hold different data for one task. Each round a site trains one
epoch from the global model and reports loss and accuracy on its own held-out images.
"""

from __future__ import annotations

import numpy as np
import torch
from net import Net  # net.py sits beside this script, in app/
from torch import nn

RULE_SEED = 1234
TRAIN_SAMPLES = 512
TEST_SAMPLES = 256
BATCH = 32
NOISE = 0.5
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def site_seed(site: str) -> int:
    return sum(site.encode())


def make_data(site: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, test x, test y) for `site`: its own images, labelled by the shared rule.

    An image is a random 4x4 grid of blocks scaled up to 16x16, plus pixel noise; it is class 1
    when it correlates positively with the rule's fixed block pattern.
    """
    blocks = np.ones((4, 4))
    rule = np.kron(np.random.default_rng(RULE_SEED).standard_normal((4, 4)), blocks)
    rng = np.random.default_rng(site_seed(site))
    count = TRAIN_SAMPLES + TEST_SAMPLES
    x = np.kron(rng.standard_normal((count, 1, 4, 4)), blocks) + NOISE * rng.standard_normal((count, 1, 16, 16))
    y = (np.einsum("nij,ij->n", x[:, 0], rule) > 0).astype(np.int64)
    xs, ys = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    return xs[:TRAIN_SAMPLES], ys[:TRAIN_SAMPLES], xs[TRAIN_SAMPLES:], ys[TRAIN_SAMPLES:]


def new_model() -> Net:
    torch.manual_seed(0)  # every site starts round 0 from the same weights
    return Net()


def sgd_step(model: nn.Module, velocity: dict[str, torch.Tensor]) -> None:
    """SGD with momentum, by hand: torch.optim's first step imports torch._dynamo, which takes seconds."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.grad is None:
                continue
            step = velocity.get(name)
            step = param.grad.clone() if step is None else step.mul_(MOMENTUM).add_(param.grad)
            velocity[name] = step
            param.add_(step, alpha=-LEARNING_RATE)


def train_round(params: dict[str, np.ndarray], site: str, round_no: int) -> tuple[
        dict[str, torch.Tensor], dict[str, float], int]:
    """One round at `site`: train an epoch from `params` (empty: a fresh model); (state_dict, metrics, examples)."""
    model = new_model()
    if params:
        model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in params.items()})
    x, y, test_x, test_y = make_data(site)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(site_seed(site) * 1000 + round_no))
    velocity: dict[str, torch.Tensor] = {}
    model.train()
    for start in range(0, len(x), BATCH):
        batch = order[start:start + BATCH]
        model.zero_grad()
        loss_fn(model(x[batch]), y[batch]).backward()
        sgd_step(model, velocity)
    model.eval()
    with torch.no_grad():
        logits = model(test_x)
        loss = float(loss_fn(logits, test_y))
        accuracy = float((logits.argmax(dim=1) == test_y).float().mean())
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return state, {"loss": loss, "accuracy": accuracy}, len(x)


def main() -> None:
    import flctl.client as fl  # imported here so tests can load train_round without a running job

    torch.set_num_threads(1)  # job.yml asks each site for one CPU; the model is small
    fl.init()
    while fl.running():
        model = fl.receive()
        params, metrics, n = train_round(model.params, fl.site_name(), model.round)
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=n))
        fl.log("loss", metrics["loss"], step=model.round)
        fl.log("accuracy", metrics["accuracy"], step=model.round)


if __name__ == "__main__":
    main()
