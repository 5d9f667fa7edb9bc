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


def outcome(job: Any) -> str:
    """The job's status, and the sites it ended without: "FINISHED (site-2 failed in round 2: reason)", so a job
    that finished on fewer sites (min_sites allowed it) does not read as a bare success."""
    from flctl.node.jobs.job_status import DROPPED

    dropped = [f"{site.name} {site.state}" + (f" in round {site.round + 1}" if site.round >= 0 else "")
               + (f": {site.error}" if site.error else "") for site in job.sites if site.state in DROPPED]
    return f"{job.status} ({'; '.join(dropped)})" if dropped else str(job.status)


def metrics_line(metrics: dict[str, dict[str, float]]) -> str:
    parts = []
    for site in sorted(metrics):
        values = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics[site].items()))
        parts.append(f"{site}: {values}")
    return "; ".join(parts)


def cross_site_table(matrix: Any) -> tuple[list[str], list[list[str]]]:
    """A cross-site evaluation's matrix as a table: one row per evaluating site, one column per model, each cell
    the model's metrics at that site ("-" where none came back). ([], []) when `matrix` is not one."""
    if not isinstance(matrix, dict) or not isinstance(matrix.get("metrics"), dict):
        return [], []
    models = [str(m) for m in matrix.get("models", [])]
    rows = []
    for site in matrix.get("sites", []):
        at = matrix["metrics"].get(site, {})
        rows.append([str(site), *(" ".join(f"{k}={v:.4g}" for k, v in sorted(at[m].items())) if m in at else "-"
                                  for m in models)])
    return ["site \\ model", *models], rows
