"""hello-pt-dp: hello-pt's CNN and synthetic images, trained at each site with DP-SGD (Opacus).

Four times hello-pt's examples and batches of 128: DP-SGD's noise is drowned by larger batches (with 512 examples in
batches of 64 the model stays at chance).

Opacus's PrivacyEngine makes the model, the optimizer and the data loader private once, when the script starts:
every step clips each example's gradient to MAX_GRAD_NORM and adds Gaussian noise of NOISE_MULTIPLIER times it,
over Poisson-sampled batches. The engine's RDP accountant lives as long as the script, so across rounds it counts
every step this site has taken on its data: `dp_sgd_epsilon`, sent with each round's metrics, is the example-level
epsilon (at DELTA) this site has spent so far. Each round starts from the global model the task brought.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from net import make_model  # net.py sits beside this script, in app/
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

RULE_SEED = 1234
TRAIN_SAMPLES = 2048
TEST_SAMPLES = 256
BATCH = 128
NOISE = 0.5
LEARNING_RATE = 0.2
MOMENTUM = 0.5
NOISE_MULTIPLIER = 1.0
"""The DP-SGD noise, in units of MAX_GRAD_NORM."""
MAX_GRAD_NORM = 1.0
"""Each example's gradient is clipped to this L2 norm."""
DELTA = 1e-5
"""The delta the epsilon is reported at (below 1 / TRAIN_SAMPLES, as it should be)."""


def site_seed(site: str) -> int:
    return sum(site.encode())


def make_data(site: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, test x, test y) for `site`, as hello-pt makes them."""
    blocks = np.ones((4, 4))
    rule = np.kron(np.random.default_rng(RULE_SEED).standard_normal((4, 4)), blocks)
    rng = np.random.default_rng(site_seed(site))
    count = TRAIN_SAMPLES + TEST_SAMPLES
    x = np.kron(rng.standard_normal((count, 1, 4, 4)), blocks) + NOISE * rng.standard_normal((count, 1, 16, 16))
    y = (np.einsum("nij,ij->n", x[:, 0], rule) > 0).astype(np.int64)
    xs, ys = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    return xs[:TRAIN_SAMPLES], ys[:TRAIN_SAMPLES], xs[TRAIN_SAMPLES:], ys[TRAIN_SAMPLES:]


class PrivateTrainer:
    """One site's model, optimizer and data loader, made private by Opacus once; `train_round` runs an epoch."""

    def __init__(self, site: str) -> None:
        from opacus import PrivacyEngine

        self.x, self.y, self.test_x, self.test_y = make_data(site)
        model = make_model()  # round 0 brings these weights too (job.yml's initial_model)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
        loader = DataLoader(TensorDataset(self.x, self.y), batch_size=BATCH,
                            generator=torch.Generator().manual_seed(site_seed(site)))
        with warnings.catch_warnings():  # Opacus warns that the secure RNG is off: see the README's Privacy section
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant="rdp")
            self.model, self.optimizer, self.loader = self.engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=NOISE_MULTIPLIER,
                max_grad_norm=MAX_GRAD_NORM)

    def train_round(self, params: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, float], int]:
        """An epoch of DP-SGD from `params` (empty: the model as it is); (state_dict, metrics, examples)."""
        inner: nn.Module = self.model._module  # the model Opacus wraps: its state_dict has the plain names
        if params:
            inner.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in params.items()})
        loss_fn = nn.CrossEntropyLoss()
        self.model.train()
        with warnings.catch_warnings():  # the full backward hook's note that the inputs need no gradient
            warnings.simplefilter("ignore")
            for batch_x, batch_y in self.loader:
                if len(batch_x) == 0:  # Poisson sampling may draw an empty batch
                    continue
                self.optimizer.zero_grad()
                loss_fn(self.model(batch_x), batch_y).backward()
                self.optimizer.step()
        self.model.eval()
        with torch.no_grad():
            logits = self.model(self.test_x)
            loss = float(loss_fn(logits, self.test_y))
            accuracy = float((logits.argmax(dim=1) == self.test_y).float().mean())
        epsilon = float(self.engine.get_epsilon(DELTA))
        state = {name: tensor.detach().clone() for name, tensor in inner.state_dict().items()}
        return state, {"loss": loss, "accuracy": accuracy, "dp_sgd_epsilon": epsilon}, len(self.x)


def main() -> None:
    import flctl.client as fl  # imported here so tests can load the trainer without a running job

    torch.set_num_threads(1)  # job.yml asks each site for one CPU; the model is small
    fl.init()
    trainer = PrivateTrainer(fl.site_name())
    while fl.running():
        model = fl.receive()
        params, metrics, n = trainer.train_round(model.params)
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=n))
        for name, value in metrics.items():
            fl.log(name, value, step=model.round)


if __name__ == "__main__":
    main()
