"""Random forests pooled across sites (the `forest` workflow): each site grows its own trees on its rows and the
forest is every site's trees together, predicting the mean of their class probabilities, as scikit-learn's
RandomForestClassifier does over its estimators.

A tree travels as plain arrays (`tree/<i>/left`, `right`, `feature`, `threshold`, `value`: scikit-learn's `tree_`
fields, the value as class probabilities per node) and the forest's classes as `classes`; nothing of scikit-learn
is needed to pool or to predict (`predict_proba`).
"""

from __future__ import annotations

import numpy as np

FIELDS = ("left", "right", "feature", "threshold", "value")


def tree_count(params: dict[str, np.ndarray]) -> int:
    """How many trees `params` hold; ValueError when one lacks a field or the fields disagree in length."""
    indices = sorted({int(name.split("/")[1]) for name in params if name.startswith("tree/")})
    if indices != list(range(len(indices))):
        raise ValueError(f"trees numbered {indices[:5]}..., not 0 to {len(indices) - 1}")
    for i in indices:
        missing = [f for f in FIELDS if f"tree/{i}/{f}" not in params]
        if missing:
            raise ValueError(f"tree {i} has no {', '.join(missing)}")
        nodes = {len(params[f"tree/{i}/{f}"]) for f in FIELDS}
        if len(nodes) != 1:
            raise ValueError(f"tree {i}'s fields have different node counts {sorted(nodes)}")
    return len(indices)


def pool(forests: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One forest of every given forest's trees, in order; ValueError when their classes differ."""
    if not forests:
        raise ValueError("no forests to pool")
    classes = np.asarray(forests[0]["classes"])
    out: dict[str, np.ndarray] = {"classes": classes}
    for forest in forests:
        if not np.array_equal(np.asarray(forest["classes"]), classes):
            raise ValueError(f"classes {np.asarray(forest['classes']).tolist()} differ from {classes.tolist()}")
        start = tree_count(out)
        for i in range(tree_count(forest)):
            for f in FIELDS:
                out[f"tree/{start + i}/{f}"] = forest[f"tree/{i}/{f}"]
    return out


def predict_proba(forest: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The mean over the trees of each row's leaf class probabilities (scikit-learn's rule: float32 features, left
    when x <= threshold)."""
    rows = np.asarray(x, np.float32).astype(np.float64)
    n = tree_count(forest)
    total = np.zeros((len(rows), len(forest["classes"])))
    index = np.arange(len(rows))
    for i in range(n):
        left, right = forest[f"tree/{i}/left"], forest[f"tree/{i}/right"]
        feature, threshold = forest[f"tree/{i}/feature"], forest[f"tree/{i}/threshold"]
        node = np.zeros(len(rows), np.int64)
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            goes_left = rows[index, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(inner, np.where(goes_left, left[node], right[node]), node)
        total += forest[f"tree/{i}/value"][node]
    return total / max(n, 1)
