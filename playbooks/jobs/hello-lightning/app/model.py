"""A small LightningModule (an MLP over 8 numbers, 3 classes) and each site's synthetic data."""

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Classifier(pl.LightningModule):
    """Logs train_loss while fitting, loss and accuracy while validating (trainer.callback_metrics: what an answer
    carries; fedavg records an evaluate task's as val_loss and val_accuracy)."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.__fl_meta__ = {"model": "Classifier"}

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _index):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _index):
        x, y = batch
        logits = self(x)
        self.log("loss", nn.functional.cross_entropy(logits, y))
        self.log("accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def make_model() -> Classifier:
    """Round 0's model (job.yml initial_model), the same at every site."""
    torch.manual_seed(0)
    return Classifier()


def make_data(site: str, n: int = 256) -> tuple[DataLoader, DataLoader]:
    """Three classes around fixed centres; each site draws its own examples from a seed of its name."""
    centres = torch.Generator().manual_seed(7)
    means = torch.randn(3, 8, generator=centres) * 0.4
    draw = torch.Generator().manual_seed(sum(site.encode()))
    y = torch.randint(0, 3, (n,), generator=draw)
    x = means[y] + torch.randn(n, 8, generator=draw)
    cut = n * 3 // 4
    train = DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=32, shuffle=True, generator=draw)
    val = DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=64)
    return train, val
