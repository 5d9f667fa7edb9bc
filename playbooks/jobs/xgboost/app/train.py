"""The site's part of federated XGBoost: its fraud-like table (amount, hour, risk scores; about 5% fraud), answered
by flctl.client.xgb (histograms per tree level, or its own trees in bagging mode).

FLCTL_XGB_ROWS (rows per site, default 2000), FLCTL_XGB_FEATURES (8) and FLCTL_XGB_DECIMALS (round every
feature: fewer distinct values) let a test or a benchmark choose the table."""

from __future__ import annotations

import os
import zlib

import numpy as np


def site_table(site: str, rows: int = 2000, features: int = 8,
               decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fraud-like table drawn from a seed made of the site's name: the same at every run."""
    rng = np.random.default_rng(zlib.crc32(site.encode()))
    x = rng.standard_normal((rows, features))
    x[:, 0] = rng.lognormal(3.0, 1.0, rows)              # amount
    x[:, 1] = rng.integers(0, 24, rows)                   # hour
    night = (x[:, 1] < 6).astype(float)
    logit = -6.0 + 0.6 * np.log(x[:, 0]) + 1.2 * night + 0.9 * x[:, 2] - 0.7 * x[:, 3] + 0.5 * x[:, 4] * x[:, 5]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    if decimals is not None:
        x = np.round(x, decimals)
    return x, y


def table_from_env(site: str) -> tuple[np.ndarray, np.ndarray]:
    decimals = os.environ.get("FLCTL_XGB_DECIMALS")
    rows, features = int(os.environ.get("FLCTL_XGB_ROWS", "2000")), int(os.environ.get("FLCTL_XGB_FEATURES", "8"))
    return site_table(site, rows, features, int(decimals) if decimals else None)


def main() -> None:
    from flctl.client.xgb import serve

    import flctl.client as fl

    fl.init()
    serve(*table_from_env(fl.site_name()))


if __name__ == "__main__":
    main()
