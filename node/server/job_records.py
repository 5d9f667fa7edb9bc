"""A job's logs and metrics as files: written beside its models when it ends, and packed for download."""

from __future__ import annotations

import json
import time

from node.store import Store


def log_files(store: Store, job_id: str) -> dict[str, str]:
    """`<site>.log` -> text, one timestamped line per log line (the server's workflow log is `server.log`)."""
    by_site: dict[str, list[str]] = {}
    for _id, site, when, line in store.logs(job_id):
        by_site.setdefault(site, []).append(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))} {line}")
    return {f"{site}.log": "\n".join(lines) + "\n" for site, lines in by_site.items()}


def metrics_json(store: Store, job_id: str) -> str:
    """Every metric: per-round results (`step` null) and what scripts logged with `fl.log` (`step` as given)."""
    return json.dumps([{"site": s, "round": r, "name": n, "value": v, "step": st}
                       for s, r, n, v, st in store.metrics(job_id)], indent=1)
