"""How jobs look in the terminal: shared by `job ls`, `job show` and `job submit --watch`."""

from __future__ import annotations

import time
from typing import Any


def duration(job: Any, now: float | None = None) -> str:
    if not job.started_at:
        return "-"
    end = job.ended_at or (now or time.time())
    seconds = int(end - job.started_at)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress(job: Any) -> str:
    if not job.rounds:
        return "-"
    return f"{job.rounds_done}/{job.rounds}"


def metrics_line(metrics: dict[str, dict[str, float]]) -> str:
    parts = []
    for site in sorted(metrics):
        values = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics[site].items()))
        parts.append(f"{site}: {values}")
    return "; ".join(parts)
