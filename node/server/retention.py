"""Ended jobs leave the server: one at a time by `flctl job rm`, and all that ended more than `retention_days` ago
(the server's `local/resources.yml`), swept at start and every hour. Each removal is logged and audited."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time

from flctl.node.jobs.job_status import ENDED
from flctl.node.server.context import ServerContext

log = logging.getLogger("flctl.server")
SWEEP_S = 3600.0
DAY_S = 86400.0


def remove_job(ctx: ServerContext, job_id: str) -> None:
    """Remove an ended job's folder, then its records (a folder that cannot be removed keeps the records too)."""
    folder = ctx.jobs_dir() / job_id
    if folder.exists():
        shutil.rmtree(folder)
    ctx.store.delete_job(job_id)


class Retention:
    def __init__(self, ctx: ServerContext, days: float) -> None:
        self._ctx = ctx
        self._days = days

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove the jobs that ended more than `days` ago; their ids."""
        cutoff = (time.time() if now is None else now) - self._days * DAY_S
        removed = []
        for job in self._ctx.store.list_jobs(ENDED):
            if job.ended_at <= 0 or job.ended_at >= cutoff:
                continue
            try:
                remove_job(self._ctx, job.id)
            except OSError as exc:
                log.warning("could not remove ended job %s: %s", job.id, exc)
                continue
            removed.append(job.id)
            log.info("removed job %s (%s), which ended more than %g days ago", job.id, job.status, self._days)
            self._audit(job.id, job.status, job.ended_at)
        return removed

    def _audit(self, job_id: str, status: str, ended_at: float) -> None:
        self._ctx.disk.call(lambda: self._ctx.audit.append("server", "job.expire", job_id=job_id, status=status,
                                                           ended_at=ended_at, retention_days=self._days))

    def run(self, stopped: threading.Event) -> None:
        """Sweep now and every SWEEP_S until `stopped`."""
        while True:
            try:
                self.sweep()
            except (sqlite3.Error, OSError) as exc:  # the disk is full, say: try again at the next sweep
                log.warning("could not remove expired jobs: %s", exc)
            if stopped.wait(SWEEP_S):
                return
