"""Data and training: linear regression on each partition's own seeded data (y = x @ [2, -1, 0.5] + 0.5 + noise)."""

import numpy as np

TRUE_W = np.array([2.0, -1.0, 0.5], dtype=np.float32)


def load_data(partition_id: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + partition_id)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = x @ TRUE_W + np.float32(0.5) + rng.normal(0, 0.1, n).astype(np.float32)
    return x, y


def train(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int,
          lr: float) -> tuple[np.ndarray, np.ndarray, float]:
    for _ in range(steps):
        err = x @ w + b - y
        w = w - np.float32(lr) * (x.T @ err / len(y)).astype(np.float32)
        b = b - np.float32(lr) * np.float32(err.mean())
    loss = float(np.mean((x @ w + b - y) ** 2))
    return w.astype(np.float32), np.asarray(b, dtype=np.float32).reshape(1), loss
