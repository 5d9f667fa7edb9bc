"""Ditto on a linear model in numpy: least squares with full-batch gradient steps.

Each round the site trains the global model it receives for LOCAL_STEPS steps (its answer, averaged by the
server) and its personal model for PERSONAL_STEPS steps of  v <- v - LR * (grad(v) + lambda * (v - w)),  w the
global model received. It reports both: global_loss (the received global model on its data) and personal_loss
(its personal model after the round). The personal model stays in this process, never sent.
"""

from __future__ import annotations

import zlib

import numpy as np

FEATURES = 5
LR = 0.05
LOCAL_STEPS = 5
PERSONAL_STEPS = 5


def site_data(site: str, n: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The site's rows: its own true weights (shared part plus a site part), 40 to 120 rows, a little noise."""
    rng = np.random.default_rng(zlib.crc32(site.encode()))
    rows = n or int(rng.integers(40, 121))
    truth = np.linspace(-1.0, 1.0, FEATURES) + 0.8 * rng.standard_normal(FEATURES)
    x = rng.standard_normal((rows, FEATURES))
    return x, x @ truth + 0.1 * rng.standard_normal(rows)


def loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((x @ w - y) ** 2) / 2)


def gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x.T @ (x @ w - y) / len(y)


def train_global(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    for _ in range(LOCAL_STEPS):
        w = w - LR * gradient(w, x, y)
    return w


def train_personal(v: np.ndarray, w: np.ndarray, lam: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    for _ in range(PERSONAL_STEPS):
        v = v - LR * (gradient(v, x, y) + lam * (v - w))
    return v


def main() -> None:
    import flctl.client as fl

    fl.init()
    x, y = site_data(fl.site_name())
    personal: np.ndarray | None = None
    while fl.running():
        model = fl.receive()
        if model is None:
            break
        w = np.asarray(model.params.get("w", np.zeros(FEATURES)), np.float64)
        personal = train_personal(w.copy() if personal is None else personal, w, float(model.meta["ditto_lambda"]),
                                  x, y)
        fl.send(fl.Model(params={"w": train_global(w, x, y)}, num_examples=len(y),
                         metrics={"global_loss": loss(w, x, y), "personal_loss": loss(personal, x, y)}))


if __name__ == "__main__":
    main()
