"""Metric series per site over rounds, from a job's `round` events: pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Series = dict[str, list[tuple[int, float]]]
"""site -> [(round, value)], rounds ascending."""


@dataclass
class MetricHistory:
    """Every metric each site reported, by metric name; fed one round event's data at a time."""

    values: dict[str, Series] = field(default_factory=dict)

    def add_round(self, data: dict[str, Any]) -> bool:
        """Take a round event's data {"round": n, "metrics": {site: {name: value}}}; True when it held any."""
        try:
            round_no = int(data["round"])
        except (KeyError, TypeError, ValueError):
            return False
        added = False
        for site, named in (data.get("metrics") or {}).items():
            if not isinstance(named, dict):
                continue
            for name, value in named.items():
                if not isinstance(value, int | float):
                    continue
                points = self.values.setdefault(str(name), {}).setdefault(str(site), [])
                points[:] = [p for p in points if p[0] != round_no] + [(round_no, float(value))]
                points.sort()
                added = True
        return added

    @property
    def names(self) -> list[str]:
        return sorted(self.values)

    def series(self, name: str) -> Series:
        return self.values.get(name, {})


def drawable(series: Series) -> tuple[Series, int]:
    """`series` without its NaN and infinite points (a diverged loss: a plot has no place for them, and plotext
    fails on them), and how many were left out."""
    kept = {site: [p for p in points if math.isfinite(p[1])] for site, points in series.items()}
    return {site: points for site, points in kept.items() if points}, sum(map(len, series.values())) - sum(
        map(len, kept.values()))
