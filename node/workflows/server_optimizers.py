"""Pure maths of FedOpt's server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2).

The sites' weighted average `a` of the global model `x` gives the pseudo-gradient `d = a - x`; the server then
takes an optimizer step along it, per tensor, with `m` and `v` the optimizer's moments (its state):

    sgdm     m = momentum * m + d                            x' = x + lr * m
    adagrad  m = beta1 * m + (1 - beta1) * d;  v = v + d²                                   x' = x + lr * m / (√v + tau)
    yogi     m = beta1 * m + (1 - beta1) * d;  v = v - (1 - beta2) * d² * sign(v - d²)      (same step)
    adam     m = beta1 * m + (1 - beta1) * d;  v = beta2 * v + (1 - beta2) * d²             (same step)

`m` starts at 0 and `v` at tau² (the paper's v₋₁ ≥ tau²); no bias correction, as in the paper. `sgdm` with
momentum 0 and lr 1 gives `a` itself (FedAvg). Moments are kept in `WeightedSum`'s accumulator dtypes
(float32 for float16/32 tensors, float64 otherwise); the model is cast back to each tensor's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from flctl.node.jobs.tasks import Params

if TYPE_CHECKING:  # numpy is imported when a job runs, not when the CLI checks one
    import numpy as np

Optimizer = Literal["sgdm", "adam", "yogi", "adagrad"]
OPTIMIZERS: tuple[Optimizer, ...] = ("sgdm", "adam", "yogi", "adagrad")


@dataclass(frozen=True)
class Hyper:
    """An optimizer's settings."""

    optimizer: Optimizer
    lr: float
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    momentum: float = 0.0


@dataclass
class Moments:
    """The optimizer's state: first moments `m` and (not for sgdm) second moments `v`, name -> array."""

    m: Params = field(default_factory=dict)
    v: Params = field(default_factory=dict)


def step(hyper: Hyper, model: Mapping[str, np.ndarray], average: Mapping[str, np.ndarray],
         moments: Moments) -> Params:
    """The next global model; `moments` are updated in place (created on the first step)."""
    import numpy as np

    from flctl.node.workflows.aggregation import accumulator_dtype

    out: Params = {}
    for name, sent in model.items():
        x = np.asarray(sent)
        acc = accumulator_dtype(x.dtype)
        d = np.asarray(average[name]).astype(acc) - x.astype(acc)
        m = moments.m.get(name)
        if hyper.optimizer == "sgdm":
            m = d if m is None else acc.type(hyper.momentum) * m + d
            update = acc.type(hyper.lr) * m
        else:
            m = acc.type(1 - hyper.beta1) * d if m is None else \
                acc.type(hyper.beta1) * m + acc.type(1 - hyper.beta1) * d
            v = moments.v.get(name)
            if v is None:
                v = np.full(x.shape, hyper.tau ** 2, acc)
            moments.v[name] = v = _second_moment(hyper, v, d * d)
            update = acc.type(hyper.lr) * m / (np.sqrt(v) + acc.type(hyper.tau))
        moments.m[name] = m
        after = x.astype(acc) + update
        if x.dtype.kind in "biu":
            np.rint(after, out=after)
        out[name] = after.astype(x.dtype, copy=False)
    return out


def _second_moment(hyper: Hyper, v: np.ndarray, squared: np.ndarray) -> np.ndarray:
    import numpy as np

    acc = v.dtype.type
    if hyper.optimizer == "adagrad":
        new = v + squared
    elif hyper.optimizer == "yogi":
        new = v - acc(1 - hyper.beta2) * squared * np.sign(v - squared)
    else:
        new = acc(hyper.beta2) * v + acc(1 - hyper.beta2) * squared
    return np.asarray(new, v.dtype)
