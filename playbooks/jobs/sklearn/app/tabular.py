"""Synthetic site data for the scikit-learn and XGBoost examples, the same at every run: each site draws its rows
from a seed made of its name, so a test (or a pooled reference) can rebuild any site's table."""

from __future__ import annotations

import zlib

import numpy as np


def site_seed(site: str) -> int:
    return zlib.crc32(site.encode())


def blobs(site: str, n: int = 300, features: int = 2) -> np.ndarray:
    """Points around four centres (the k-means example), a site-dependent share from each."""
    rng = np.random.default_rng(site_seed(site))
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])[:, :features]
    share = rng.dirichlet(np.ones(len(centres)) * 2)
    which = rng.choice(len(centres), size=n, p=share)
    return centres[which] + rng.standard_normal((n, features))


def fraud(site: str, n: int = 2000, features: int = 8, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fraud-like table: amount (log-normal), hour, a few risk scores; about 5% positives, more likely for big
    amounts at night and high scores. `decimals` rounds every feature (fewer distinct values)."""
    rng = np.random.default_rng(site_seed(site))
    x = rng.standard_normal((n, features))
    x[:, 0] = rng.lognormal(3.0, 1.0, n)                # amount
    x[:, 1] = rng.integers(0, 24, n)                     # hour
    night = (x[:, 1] < 6).astype(float)
    logit = -4.0 + 0.6 * np.log(x[:, 0]) + 1.2 * night + 0.9 * x[:, 2] - 0.7 * x[:, 3] + 0.5 * x[:, 4] * x[:, 5]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    if decimals is not None:
        x = np.round(x, decimals)
    return x, y
