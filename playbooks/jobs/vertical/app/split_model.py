"""The vertical example's split neural network: a bottom model per site, a top model at the label site. A
module's initial weights come from a seed of its own, so split training and the central reference start alike."""

from __future__ import annotations

import torch

HIDDEN = 8
LEARNING_RATE = 0.01


def bottom(in_features: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(in_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, HIDDEN),
                               torch.nn.ReLU())


def top(parties: int, seed: int = 99) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(HIDDEN * parties, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1),
                               torch.nn.Flatten(0))


def optimizer(*modules: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LEARNING_RATE)


def bottom_seed(site: str) -> int:
    return sum(site.encode())
