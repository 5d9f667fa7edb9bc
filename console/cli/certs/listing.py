"""What `flctl certs` shows, from the server or from a provisioning workspace: one row shape for both."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flctl.provisioner.kit_info import EXPIRY_WARNING_DAYS

DAY_S = 86400.0


@dataclass(frozen=True)
class CertRow:
    name: str
    kind: str
    org: str
    role: str
    not_after: float

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / DAY_S


def expiring(days_left: float, within: float = EXPIRY_WARNING_DAYS) -> bool:
    return days_left < within


def mark(days_left: float, within: float = EXPIRY_WARNING_DAYS) -> str:
    """`expired`, `expiring` (under `within` days) or ''."""
    if days_left < 0:
        return "expired"
    return "expiring" if expiring(days_left, within) else ""


def sort_rows(rows: list[CertRow]) -> list[CertRow]:
    return sorted(rows, key=lambda r: (r.not_after, r.kind, r.name))


def row_json(row: CertRow, now: float, within: float) -> dict[str, Any]:
    left = row.days_left(now)
    return {"name": row.name, "kind": row.kind, "org": row.org, "role": row.role or None,
            "not_after": dt.datetime.fromtimestamp(row.not_after, dt.UTC).isoformat(), "days_left": round(left, 2),
            "expiring": expiring(left, within), "expired": left < 0}


def row_cells(row: CertRow, now: float, within: float) -> tuple[str, ...]:
    left = row.days_left(now)
    day = f"{dt.datetime.fromtimestamp(row.not_after, dt.UTC):%Y-%m-%d}"
    return row.name, row.kind, row.org, row.role or "-", day, f"{left:.0f}", mark(left, within) or "-"
