"""Synthetic, non-IID data each site makes itself: ten classes of 16 numbers, labels skewed per site.

A class is three clusters (their centres come from one seed, the same everywhere), so the classes are not
linearly separable. Each site draws its label shares from a Dirichlet distribution (alpha 0.3, from the same seed
and the site's name): one site holds mostly two or three classes, another other ones. That is the usual way to
split a data set between simulated sites so that their labels are skewed (Hsu et al. 2019); here each site draws
its own examples with its shares instead of taking a slice of one downloaded data set.
"""

from __future__ import annotations

import zlib

import numpy as np

SEED = 2026
ALPHA = 0.3
CLASSES = 10
FEATURES = 16
CLUSTERS = 3  # per class
SPREAD = 1.6  # how far apart the clusters' centres lie, in units of the examples' noise
TRAIN_SAMPLES = 500
TEST_SAMPLES = 200

Arrays = tuple[np.ndarray, np.ndarray]


def centres() -> np.ndarray:
    """(class, cluster, feature): where each class's clusters lie; the same at every site."""
    return np.random.default_rng(SEED).normal(0.0, SPREAD, (CLASSES, CLUSTERS, FEATURES))


def draw(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 examples of the given labels: a random cluster of the class, plus unit noise."""
    cluster = rng.integers(0, CLUSTERS, len(labels))
    x: np.ndarray = centres()[labels, cluster] + rng.standard_normal((len(labels), FEATURES))
    return x.astype(np.float32)


def site_number(site: str) -> int:
    return zlib.crc32(site.encode())


def label_shares(site: str, alpha: float = ALPHA) -> np.ndarray:
    """The site's share of each class: a draw from Dirichlet(alpha, ..., alpha), seeded by SEED and the site."""
    return np.random.default_rng([SEED, site_number(site)]).dirichlet([alpha] * CLASSES)


def site_data(site: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y) of `site`: its held-out examples are skewed as its training ones are."""
    rng = np.random.default_rng([SEED, site_number(site), 1])
    labels = rng.choice(CLASSES, size=TRAIN_SAMPLES + TEST_SAMPLES, p=label_shares(site))
    x = draw(labels, rng)
    return x[:TRAIN_SAMPLES], labels[:TRAIN_SAMPLES], x[TRAIN_SAMPLES:], labels[TRAIN_SAMPLES:]


def balanced_test(per_class: int = 200) -> Arrays:
    """Examples of every class in equal numbers (no site holds such data): what a model for everyone must classify."""
    rng = np.random.default_rng([SEED, 2])
    labels = np.repeat(np.arange(CLASSES), per_class)
    return draw(labels, rng), labels
