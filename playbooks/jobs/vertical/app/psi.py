"""The PSI step of the vertical example: each site's IDs are the customer_id column of its table (a CSV: the file
CUSTOMERS_CSV names, or the example's synthetic table written to the job workspace)."""

from __future__ import annotations

import os
from pathlib import Path

from vertical_data import write_csv

import flctl.client as fl


def customer_ids() -> list[str]:
    path = os.environ.get("CUSTOMERS_CSV") or str(write_csv(fl.site_name(), Path.home() / "customers.csv"))
    return fl.csv_ids(path, "customer_id")


if __name__ == "__main__":
    fl.init()
    size = fl.psi(customer_ids)
    print(f"{fl.site_name()}: the intersection has {size} customers (psi/intersection.txt)")
