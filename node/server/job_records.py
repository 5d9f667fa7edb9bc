"""A job's records as files: its row (`record.json`, kept current whenever its status changes), and its logs and
metrics (written beside its models when it ends, and packed for download). From these `flctl node recover`
rebuilds the jobs when the server's database is damaged (see `flctl.node.server.store_recovery`)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from flctl.node.jobs import metrics_file
from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.server.store import JobRow, Store

RECORD_FILE = "record.json"


def save_record(job_dir: Path, job: JobRow) -> None:
    """Write the job's row to `job_dir/record.json`, whole or not at all (a temporary file renamed over it)."""
    if not job_dir.is_dir():
        return
    fields = dataclasses.asdict(job)
    fields["site_states"] = {site: list(row) for site, row in job.site_states.items()}
    temp = job_dir / f".{RECORD_FILE}.tmp"
    temp.write_text(json.dumps(fields, indent=1))
    os.replace(temp, job_dir / RECORD_FILE)


def load_record(job_dir: Path) -> JobRow:
    """The row saved by `save_record`; ValueError (or OSError) when it is missing or unreadable."""
    fields: dict[str, Any] = json.loads((job_dir / RECORD_FILE).read_text())
    if not isinstance(fields, dict):
        raise ValueError(f"{RECORD_FILE} does not hold an object")
    states = fields.pop("site_states", {})
    try:
        job = JobRow(**fields)
    except TypeError as exc:
        raise ValueError(f"{RECORD_FILE} does not hold a job ({exc})") from None
    job.status = JobStatus.parse(str(job.status))
    job.site_states = {str(site): (SiteState.parse(str(row[0])), int(row[1]), str(row[2]))
                       for site, row in states.items()}
    return job


MAX_REPORT_BYTES = 4 << 20
"""A report larger than this is not shown by `job show` (it is still in the job's download)."""


def reports_json(job_dir: Path) -> dict[str, str]:
    """name -> JSON text of each report the job's workflow saved (`reports/NAME.json`), those small enough to show."""
    folder = job_dir / "reports"
    if not folder.is_dir():
        return {}
    return {path.stem: path.read_text() for path in sorted(folder.glob("*.json"))
            if path.is_file() and path.stat().st_size <= MAX_REPORT_BYTES}


def log_files(store: Store, job_id: str) -> dict[str, str]:
    """`<site>.log` -> text, one timestamped line per log line (the server's workflow log is `server.log`)."""
    by_site: dict[str, list[str]] = {}
    for _id, site, when, line in store.logs(job_id):
        by_site.setdefault(site, []).append(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))} {line}")
    return {f"{site}.log": "\n".join(lines) + "\n" for site, lines in by_site.items()}


def metrics_json(store: Store, job_id: str) -> str:
    """Every metric: per-round results (`step` null) and what scripts logged with `fl.log` (`step` as given)."""
    return metrics_file.dumps([{"site": s, "round": r, "name": n, "value": v, "step": st}
                               for s, r, n, v, st in store.metrics(job_id)])
