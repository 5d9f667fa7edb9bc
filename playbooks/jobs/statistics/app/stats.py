"""A statistics job's script: each site's data as named columns, and nothing else.

Each site makes its own synthetic patient table from a seed drawn from its name (a real site would read its CSV:
`pandas.read_csv("/data/patients.csv")`), writes it as a CSV file and reads it back with pandas. Run with
`flctl simulate playbooks/jobs/statistics` or submit it to a federation.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

import flctl.client as fl

ROWS = int(os.environ.get("PATIENTS", "0") or 0)


def make_table(site: str) -> pd.DataFrame:
    """A synthetic patient table for `site`: age, bmi, systolic blood pressure, a diagnosis code and a smoker
    flag, with some values missing; its size and its mix depend on the site."""
    rng = np.random.default_rng(zlib.crc32(site.encode()))
    rows = ROWS or int(rng.integers(300, 1500))
    age = rng.normal(58 + rng.uniform(-8, 8), 14, rows).clip(18, 99).round()
    bmi = rng.normal(27, 4.5, rows).round(1)
    bmi[rng.random(rows) < 0.05] = np.nan
    systolic = (100 + 0.5 * age + rng.normal(0, 12, rows)).round()
    diagnosis = rng.choice(["C34", "C50", "I21", "E11", "J44"], rows, p=[0.2, 0.15, 0.25, 0.3, 0.1])
    smoker = (rng.random(rows) < 0.3).astype(float)
    return pd.DataFrame({"age": age, "bmi": bmi, "systolic": systolic, "diagnosis": diagnosis, "smoker": smoker})


def load() -> pd.DataFrame:
    """The site's data: its table as a CSV file, read back with pandas."""
    path = Path(tempfile.gettempdir()) / f"patients-{fl.site_name()}.csv"
    if not path.exists():
        make_table(fl.site_name()).to_csv(path, index=False)
    return pd.read_csv(path)


if __name__ == "__main__":
    fl.serve_statistics(load)
