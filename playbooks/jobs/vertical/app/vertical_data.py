"""The vertical example's data: one population of customers, seen by a bank (site-1: four columns and whether the
customer defaulted, the label) and an insurer (site-2: four other columns), each knowing only some of the
customers, in an order of its own; a third site (site-3), for the PSI example only, knows yet another subset.

The label depends on columns of both sites (and on a product of a bank column and an insurer column), so neither
site predicts it well alone. Every run of a site makes the same table (fixed seeds), as a real site's would be
read from its database. `write_csv` writes a site's table as the CSV a real site would point the PSI job at.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

POPULATION = 1500
COLUMNS = {"site-1": ["income", "balance", "loans", "age"], "site-2": ["claims", "premium", "vehicles", "tenure"]}
LABEL_SITE, LABEL = "site-1", "defaulted"
KNOWN = {"site-1": 5, "site-2": 7, "site-3": 3}
"""Site s knows customer i unless i is a multiple of KNOWN[s]: 1200 and 1285 customers, 1028 in common."""


def customer_id(i: int) -> str:
    return f"C{i:05d}"


def population() -> tuple[np.ndarray, np.ndarray]:
    """Every customer's eight columns (bank's four, then insurer's four) and label."""
    x = np.random.default_rng(2024).standard_normal((POPULATION, 8)).astype(np.float32)
    score = x[:, 0] + x[:, 1] - x[:, 4] + 0.8 * x[:, 5] + 0.7 * x[:, 2] * x[:, 6] + 0.3 * x[:, 3] - 0.3 * x[:, 7]
    return x, (score > 0).astype(np.float32)


def site_table(site: str) -> dict[str, list[object]]:
    """The site's table: `customer_id`, its columns (and the label at the bank), its customers in its own order."""
    x, y = population()
    every = KNOWN.get(site, 2)
    rows = [i for i in range(POPULATION) if i % every != 0]
    rows = [rows[j] for j in np.random.default_rng(sum(site.encode())).permutation(len(rows))]
    table: dict[str, list[object]] = {"customer_id": [customer_id(i) for i in rows]}
    first = 0 if site == "site-1" else 4
    for k, name in enumerate(COLUMNS.get(site, [])):
        table[name] = [float(x[i, first + k]) for i in rows]
    if site == LABEL_SITE:
        table[LABEL] = [float(y[i]) for i in rows]
    return table


def write_csv(site: str, path: Path) -> Path:
    table = site_table(site)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(table))
        writer.writerows(zip(*table.values(), strict=True))
    return path


def aligned(site: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The site's feature columns (and the labels, at the bank) for `ids`, in that order (the intersection)."""
    table = site_table(site)
    where = {cid: row for row, cid in enumerate(table["customer_id"])}
    rows = [where[cid] for cid in ids]
    x = np.array([[table[name][r] for name in COLUMNS[site]] for r in rows], np.float32).reshape(len(rows), -1)
    y = np.array([table[LABEL][r] for r in rows], np.float32) if LABEL in table else None
    return x, y
