"""Federated k-means (Lloyd's iterations): each site assigns its points to the nearest centre and sends, per centre,
the sum of its points and their count; the server adds them up and divides. A round is exactly one Lloyd iteration
over the pooled data, so from the same initial centres the result is scikit-learn's KMeans(n_init=1, algorithm="lloyd")
on the pooled points (up to the order floating-point sums are taken in).
"""

from __future__ import annotations

import numpy as np

CHUNK = 8192
"""Points assigned at a time: the distance matrix held is CHUNK x clusters."""


def assign(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index of each point's nearest centre (the first of equals) and its squared distance to it."""
    labels = np.empty(len(points), np.int64)
    distances = np.empty(len(points), np.float64)
    c = np.asarray(centers, np.float64)
    for start in range(0, len(points), CHUNK):
        x = np.asarray(points[start:start + CHUNK], np.float64)
        d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        labels[start:start + len(x)] = d.argmin(axis=1)
        distances[start:start + len(x)] = d.min(axis=1)
    return labels, distances


def site_sums(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One site's part of a Lloyd iteration: per centre, the sum of the points nearest to it and how many there are;
    and the site's inertia (sum of squared distances to the nearest centre)."""
    x = np.asarray(points, np.float64)
    if x.ndim != 2 or x.shape[1] != np.shape(centers)[1]:
        raise ValueError(f"the points have shape {x.shape}; {np.shape(centers)[1]} features per point are needed")
    labels, distances = assign(x, centers)
    k = len(centers)
    sums = np.zeros((k, x.shape[1]), np.float64)
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return sums, counts, float(distances.sum())


def new_centers(centers: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of each centre's points over every site; a centre no point is nearest to stays where it is."""
    old = np.asarray(centers, np.float64)
    out = old.copy()
    filled = counts > 0
    out[filled] = sums[filled] / counts[filled, None]
    return out


def kmeans_plus_plus(candidates: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k initial centres chosen among `candidates` by k-means++ (Arthur & Vassilvitskii 2007), each candidate
    counting `weights` times: the first at random by weight, each next one with probability proportional to its
    weight times its squared distance to the nearest chosen centre."""
    x = np.asarray(candidates, np.float64)
    w = np.asarray(weights, np.float64)
    if len(x) < k:
        raise ValueError(f"{len(x)} candidate points for {k} clusters")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.choice(len(x), p=w / w.sum()))]
    nearest = ((x - x[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        mass = w * nearest
        index = int(rng.choice(len(x), p=mass / mass.sum())) if mass.sum() > 0 else int(rng.integers(len(x)))
        chosen.append(index)
        nearest = np.minimum(nearest, ((x - x[index]) ** 2).sum(axis=1))
    return x[chosen].copy()
