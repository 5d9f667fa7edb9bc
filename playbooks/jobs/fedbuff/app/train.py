"""fedbuff example: hello-numpy's stand-in for training at sites of different speeds.

Each site has its own "ideal" model (drawn from a seed made of its name) and each task moves the model it was sent
half-way towards it. A site's task takes STEP_S seconds times its slowness, 1 + (N - 1) % 10 for site-N (site-1
1x, site-10 10x), so the fast sites answer many times while the slow ones answer once: FedBuff's server steps
every `buffer_size` answers without waiting for them. The task's meta says which model version it trained.
"""

from __future__ import annotations

import os
import re
import time

import numpy as np

STEP = 0.5


def site_seed(site: str) -> int:
    return sum(site.encode())


def slowness(site: str) -> int:
    """How many times slower than site-1 this site trains: 1 + (N - 1) % 10 for site-N (1 for other names)."""
    match = re.search(r"(\d+)$", site)
    return 1 + (int(match.group(1)) - 1) % 10 if match else 1


def site_target(site: str) -> dict[str, np.ndarray]:
    """The model this site's data 'wants': near w = 1, b = -0.5, a little different at each site."""
    rng = np.random.default_rng(site_seed(site))
    return {"w": (1.0 + 0.1 * rng.standard_normal((4, 4))).astype(np.float32),
            "b": (-0.5 + 0.1 * rng.standard_normal(4)).astype(np.float32)}


def train(params: dict[str, np.ndarray], site: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One task at `site`: the params moved half-way to its target, and its loss (distance to the target)."""
    target = site_target(site)
    new = {name: (value + STEP * (target[name] - value)).astype(np.float32) for name, value in params.items()}
    loss = float(np.mean([np.mean((new[name] - target[name]) ** 2) for name in new]))
    return new, {"loss": loss}


def main() -> None:
    import flctl.client as fl  # imported here so tests can load train() without a running job

    fl.init()
    site = fl.site_name()
    pause = float(os.environ.get("STEP_S", "0")) * slowness(site)
    while fl.running():
        model = fl.receive()
        time.sleep(pause)
        params, metrics = train({k: np.asarray(v) for k, v in model.params.items()}, site)
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=10))


if __name__ == "__main__":
    main()
