"""Synthetic site data for the scikit-learn examples, the same at every run: each site draws its rows from a seed
made of its name, so a test (or a pooled reference) can rebuild any site's table."""

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


def labelled(site: str, n: int = 400, features: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A binary classification table (the linear and forest examples): a linear rule plus an interaction and
    noise; the sites' feature means shifted a little (not IID)."""
    rng = np.random.default_rng(site_seed(site))
    x = rng.standard_normal((n, features)) + 0.3 * rng.standard_normal(features)
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] * x[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y
