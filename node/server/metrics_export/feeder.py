"""A job's exporter process: the job's metrics, as the server stores them, fed to every exporter it turns on.

    python -m flctl.node.server.metrics_export.feeder JOB_DIR

Reads `JOB_DIR/export.json` (`launch.ExportPlan`), then follows the job's rows of the server's store (read-only,
every POLL_S) and hands each exporter the new ones: the values scripts log (`fl.log`) and the metrics of each
site's answers, per round. After the job has ended it waits for its sites' last reports (until every site's part
is over, or SETTLE_S), exports them, and closes every exporter with the job's status; end of file on stdin (the
daemon stopped) ends it the same way, with no status. What it has exported is remembered in
`JOB_DIR/export/state.json`, so a job the server resumes after a restart goes on where it left off.

An exporter that fails (an MLflow server that cannot be reached…) is named once in the job's log (this process's
stderr) and left out from then on; the job never waits for an exporter, and its metrics stay in flctl.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import threading
import time
from pathlib import Path

from flctl.node.jobs.metrics_spec import LocalMetricsSpec
from flctl.node.server.metrics_export.base import JobContext, MetricPoint
from flctl.node.server.metrics_export.guard import Guarded, Say, open_exporters
from flctl.node.server.metrics_export.launch import EXPORT_PLAN, ExportPlan

POLL_S = 0.5
"""How often the store is read for new metrics."""
SETTLE_S = 15.0
"""After the job ended, how long its sites' last reports (sent as they stop) are waited for."""
BATCH = 5000
"""The most rows read at once (a resumed job's backlog is read a batch at a time)."""
ENDED = ("FINISHED", "FAILED", "ABORTED")
SITE_OUT = ("finished", "failed", "aborted", "offline")


def say(line: str) -> None:
    """A line for the job's server log."""
    print(line, file=sys.stderr, flush=True)


class MetricsTail:
    """The job's rows of the server's store (`flctl.node.server.store`'s tables), read-only, as they are added."""

    def __init__(self, db: Path, job_id: str) -> None:
        self._db = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        self._job_id = job_id

    def after(self, rowid: int) -> list[tuple[int, MetricPoint]]:
        rows = self._db.execute("SELECT rowid, site, round, name, value, step, time FROM metrics "
                                "WHERE job_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                                (self._job_id, rowid, BATCH)).fetchall()
        # a NULL value is a NaN (the store keeps a NaN so: SQLite has none)
        return [(r[0], MetricPoint(r[1], r[2], r[3], math.nan if r[4] is None else r[4], r[5], r[6])) for r in rows]

    def last_rowid(self) -> int:
        """The newest row of the whole table (any job's), 0 for none."""
        return int(self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM metrics").fetchone()[0])

    def status(self) -> str:
        row = self._db.execute("SELECT status FROM jobs WHERE id = ?", (self._job_id,)).fetchone()
        return str(row[0]) if row else "FAILED"  # a job removed meanwhile: nothing more will come

    def sites_done(self) -> bool:
        states = self._db.execute("SELECT state FROM job_sites WHERE job_id = ?", (self._job_id,)).fetchall()
        return all(state in SITE_OUT for (state,) in states)

    def close(self) -> None:
        self._db.close()


class Progress:
    """The last row exported, in `JOB_DIR/export/state.json`."""

    def __init__(self, job_dir: Path) -> None:
        self._path = job_dir / "export" / "state.json"
        try:
            self.rowid = int(json.loads(self._path.read_text())["rowid"])
        except (OSError, ValueError, KeyError, TypeError):
            self.rowid = 0

    def save(self, rowid: int) -> None:
        self.rowid = rowid
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rowid": rowid}))
        tmp.replace(self._path)


def follow(tail: MetricsTail, exporters: list[Guarded], progress: Progress, stopped: threading.Event,
           note: Say = say) -> str:
    """Feed new rows to the exporters until the job has ended and its sites are done; the job's end status ("" when
    the daemon stopped first). `note` takes a line for the job's log."""
    ended_at: float | None = None
    if progress.rowid > tail.last_rowid():  # `flctl node recover` rebuilt the store: its rows are numbered anew
        note("metrics export: the server's store was rebuilt since this job's last export; exporting from its first "
            "recorded value")
        progress.rowid = 0
    while True:
        status = tail.status()
        feed(tail, exporters, progress)
        if status in ENDED:
            ended_at = ended_at or time.monotonic()
            if tail.sites_done() or time.monotonic() - ended_at > SETTLE_S:
                feed(tail, exporters, progress)
                return status
        if stopped.wait(POLL_S):
            feed(tail, exporters, progress)
            return ""


def feed(tail: MetricsTail, exporters: list[Guarded], progress: Progress) -> None:
    """Every row added since the last one exported, a batch at a time."""
    while rows := tail.after(progress.rowid):
        points = [point for _, point in rows]
        for exporter in exporters:
            exporter.write(points)
        progress.save(rows[-1][0])
        if len(rows) < BATCH:
            return


def _watch_stdin(stopped: threading.Event) -> None:
    for _ in sys.stdin:
        pass
    stopped.set()


def main(argv: list[str]) -> int:
    job_dir = Path(argv[0])
    plan = ExportPlan.model_validate_json((job_dir / EXPORT_PLAN).read_text())
    stopped = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stopped,), daemon=True).start()
    job = JobContext(plan.job_id, plan.job_name, job_dir, plan.sites, plan.workflow, plan.workflow_args)
    exporters = open_exporters(LocalMetricsSpec.model_validate(plan.metrics), job, say,
                               f"flctl (flctl job metrics {plan.job_id})")
    if not exporters:
        return 0
    try:
        tail = MetricsTail(Path(plan.db), plan.job_id)
        try:
            status = follow(tail, exporters, Progress(job_dir), stopped)
        finally:
            tail.close()
    except sqlite3.Error as exc:  # the store is the daemon's: it fails closed there, here the export just stops
        say(f"metrics export stopped: the server's store could not be read ({exc}); the job's metrics stay in "
            f"flctl (flctl job metrics {plan.job_id})")
        status = ""
    for exporter in exporters:
        exporter.close(status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
