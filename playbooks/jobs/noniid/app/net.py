"""A small MLP for the 16 features and 10 classes of data.py (about 2k parameters)."""

from __future__ import annotations

import torch
from data import CLASSES, FEATURES
from torch import nn

HIDDEN = 64


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out
