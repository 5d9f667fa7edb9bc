"""Split learning over the rows the PSI job found: the bank (site-1, with the labels) and the insurer (site-2)
train one model, each its bottom part over its own columns; the bank also the top part."""

from __future__ import annotations

from pathlib import Path

import split_model
import torch
from vertical_data import aligned

import flctl.client as fl


def main() -> None:
    fl.init()
    site = fl.site_name()
    ids = (Path.home() / "psi" / "intersection.txt").read_text().split()
    x, y = aligned(site, ids)
    bottom = split_model.bottom(x.shape[1], split_model.bottom_seed(site))
    if y is None:
        fl.split_nn(bottom, torch.from_numpy(x), split_model.optimizer(bottom))
        return
    top = split_model.top(parties=2)
    fl.split_nn(bottom, torch.from_numpy(x), split_model.optimizer(bottom, top), top=top, labels=torch.from_numpy(y),
                loss_fn=torch.nn.BCEWithLogitsLoss())


if __name__ == "__main__":
    main()
