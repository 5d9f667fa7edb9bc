"""hello-numpy: a deterministic stand-in for training, to see FedAvg work end to end.

Each site has its own "ideal" model (drawn from a seed made of its name) and each round moves
the global model half-way towards it. FedAvg averages those moves weighted by the sites'
example counts, so the global model settles on the weighted mean of the ideals and each
site's loss (its distance to its ideal) falls round after round.
"""

from __future__ import annotations

import numpy as np

STEP = 0.5


def site_seed(site: str) -> int:
    """A seed every run of this site derives the same way: the sum of its name's bytes."""
    return sum(site.encode())


def initial_params() -> dict[str, np.ndarray]:
    return {"w": np.zeros((4, 4), np.float32), "b": np.zeros(4, np.float32)}


def site_target(site: str) -> dict[str, np.ndarray]:
    """The model this site's data 'wants': near w = 1, b = -0.5, a little different at each site."""
    rng = np.random.default_rng(site_seed(site))
    return {
        "w": (1.0 + 0.1 * rng.standard_normal((4, 4))).astype(np.float32),
        "b": (-0.5 + 0.1 * rng.standard_normal(4)).astype(np.float32),
    }


def num_examples(site: str) -> int:
    return 10 * (site_seed(site) % 5 + 1)


def train_round(params: dict[str, np.ndarray], site: str) -> tuple[dict[str, np.ndarray], dict[str, float], int]:
    """One round at `site`: (new params, metrics, number of examples); an empty `params` starts from zeros."""
    current = {name: np.asarray(value, np.float32) for name, value in params.items()} or initial_params()
    target = site_target(site)
    new = {name: (value + STEP * (target[name] - value)).astype(np.float32) for name, value in current.items()}
    loss = float(np.mean([np.mean((new[name] - target[name]) ** 2) for name in new]))
    return new, {"loss": loss}, num_examples(site)


def main() -> None:
    import flctl.client as fl  # imported here so tests can load train_round without a running job

    fl.init()
    while fl.running():
        model = fl.receive()
        params, metrics, n = train_round(model.params, fl.site_name())
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=n))
        fl.log("loss", metrics["loss"], step=model.round)


if __name__ == "__main__":
    main()
