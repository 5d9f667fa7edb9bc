"""Linear models with scikit-learn under FedAvg: each round the site sets its SGDClassifier's coefficients to the
global ones, runs EPOCHS passes of SGD over its rows, and sends the coefficients back (averaged by rows at the
server). `python linear.py log_loss` is logistic regression, `python linear.py hinge` a linear SVM."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from tabular import labelled

EPOCHS = 5


def make(loss: str, site_seed: int) -> Any:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss=loss, learning_rate="constant", eta0=0.05, alpha=1e-4, random_state=site_seed,
                         shuffle=True)


def train_round(loss: str, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                seed: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One round at a site: start from `params` (empty: zeros), EPOCHS passes of partial_fit; the new coefficients
    and the global model's accuracy on the site's rows before training."""
    model = make(loss, seed)
    coef = np.asarray(params.get("coef", np.zeros((1, x.shape[1]))), np.float64)
    intercept = np.asarray(params.get("intercept", np.zeros(1)), np.float64)
    accuracy = float(np.mean(((x @ coef.T + intercept).ravel() > 0) == (y == 1)))
    model.partial_fit(x[:1], y[:1], classes=np.array([0, 1]))
    model.coef_, model.intercept_ = coef.copy(), intercept.copy()
    for _ in range(EPOCHS):
        model.partial_fit(x, y)
    return {"coef": model.coef_.copy(), "intercept": model.intercept_.copy()}, {"accuracy": accuracy}


def main() -> None:
    from tabular import site_seed

    import flctl.client as fl

    loss = sys.argv[1] if len(sys.argv) > 1 else "log_loss"
    fl.init()
    x, y = labelled(fl.site_name())
    while fl.running():
        model = fl.receive()
        if model is None:
            break
        params, metrics = train_round(loss, model.params, x, y, site_seed(fl.site_name()) % 2**31)
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=len(y)))


if __name__ == "__main__":
    main()
