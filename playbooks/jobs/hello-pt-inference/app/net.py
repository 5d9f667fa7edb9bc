"""hello-pt's CNN for 1x16x16 images and two classes (about 18k parameters), and the model job.yml starts from."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8 x 8 x 8
            nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 4 x 4
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model() -> Net:
    """job.yml's initial_model: hello-pt's round-0 weights (seed 0), untrained. Submit with
    `--model-from <hello-pt job id>` to run a trained one instead."""
    torch.manual_seed(0)
    return Net()
