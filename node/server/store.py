"""The server's durable record: jobs, per-site job state, events, metrics, logs and the site registry.

SQLite in WAL mode under the server workspace. One connection guarded by a lock:
the daemon is the only writer, so the rows read on every call of every site (the site
registry, sites' states in jobs) are also kept in memory. Changes to many sites at once (their
metrics) go in one transaction; heartbeats and sites' states in jobs (a thousand sites
answering a round) update memory at once and reach the database at most `HEARTBEAT_FLUSH_S`
later, all together (reads through this store see them at once). `wait_for_change` lets streams follow new events
without polling the database in a loop. A write that fails because the disk is full
(SQLite rolls it back: nothing is half-written) calls `on_full`, and is tried once more
when that freed some space (see `flctl.node.server.disk_guard`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.node.jobs.job_status import JobStatus, SiteState

SiteRecord = tuple[SiteState, int, str]
"""A site's part in a job: (state, round, error)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, submitter TEXT NOT NULL,
  submitter_org TEXT NOT NULL, submitter_role TEXT NOT NULL, submitted_at REAL NOT NULL,
  started_at REAL NOT NULL DEFAULT 0, ended_at REAL NOT NULL DEFAULT 0, round INTEGER NOT NULL DEFAULT -1,
  rounds INTEGER NOT NULL DEFAULT 0, workflow TEXT NOT NULL, min_sites INTEGER NOT NULL,
  sites_json TEXT NOT NULL, wait_reason TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
  bundle_sha256 TEXT NOT NULL, spec_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_sites (
  job_id TEXT NOT NULL, site TEXT NOT NULL, state TEXT NOT NULL, round INTEGER NOT NULL DEFAULT -1,
  error TEXT NOT NULL DEFAULT '', PRIMARY KEY (job_id, site));
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
  message TEXT NOT NULL, data_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS metrics (
  job_id TEXT NOT NULL, site TEXT NOT NULL, round INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
  step INTEGER, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_job ON metrics (job_id);
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, site TEXT NOT NULL, time REAL NOT NULL,
  line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_job ON logs (job_id, id);
CREATE TABLE IF NOT EXISTS sites (
  name TEXT PRIMARY KEY, org TEXT NOT NULL, registered_at REAL NOT NULL, last_heartbeat REAL NOT NULL,
  running_jobs_json TEXT NOT NULL DEFAULT '[]', not_after REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS admins (
  name TEXT PRIMARY KEY, org TEXT NOT NULL, role TEXT NOT NULL, not_after REAL NOT NULL, last_seen REAL NOT NULL);
"""

NAN_METRICS = """
ALTER TABLE metrics RENAME TO metrics_before_nan;
CREATE TABLE metrics (
  job_id TEXT NOT NULL, site TEXT NOT NULL, round INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
  step INTEGER, time REAL NOT NULL);
INSERT INTO metrics (rowid, job_id, site, round, name, value, step, time)
  SELECT rowid, job_id, site, round, name, value, step, time FROM metrics_before_nan;
DROP TABLE metrics_before_nan;
CREATE INDEX IF NOT EXISTS metrics_job ON metrics (job_id);
"""
"""A metric's value NULL stands for NaN (SQLite stores a NaN as NULL): a database made before, whose `value` was
NOT NULL, has its metrics table made again so, in one transaction, its rows under their rowids (what the metrics
exporters count by)."""

HEARTBEAT_FLUSH_S = 1.0
"""Heartbeats and sites' states in jobs are written to the database together, at most this long after they change
(memory is current)."""


def _stored(value: float) -> float | None:
    """A metric's value as the metrics table holds it: NULL for NaN (what SQLite makes of a NaN anyway)."""
    value = float(value)
    return None if math.isnan(value) else value


class StoreDamaged(Exception):
    """The database fails SQLite's own check (`PRAGMA quick_check`), or is no database at all."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path} is damaged ({detail})")
        self.path, self.detail = path, detail


def _damage(exc: sqlite3.OperationalError) -> bool:
    """Whether an error opening the database means its file is damaged (not, say, a locked or unreadable one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@dataclass
class JobRow:
    id: str
    name: str
    status: JobStatus
    submitter: str
    submitter_org: str
    submitter_role: str
    submitted_at: float
    started_at: float
    ended_at: float
    round: int
    rounds: int
    workflow: str
    min_sites: int
    sites: list[str] | str  # a list of names, or "all"
    wait_reason: str
    error: str
    bundle_sha256: str
    spec: dict[str, Any]
    site_states: dict[str, SiteRecord] = field(default_factory=dict)  # site -> (state, round, error)


@dataclass(frozen=True)
class EventRow:
    seq: int
    job_id: str
    time: float
    kind: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class SiteRow:
    name: str
    org: str
    registered_at: float
    last_heartbeat: float
    running_jobs: list[str]
    not_after: float


class Store:
    def __init__(self, path: Path, on_event: Callable[[str, str, str, dict[str, Any]], object] | None = None,
                 on_full: Callable[[], bool] | None = None, on_job: Callable[[JobRow], object] | None = None) -> None:
        """`on_event(job_id, kind, message, data)` is called after each event is stored and before any reader can
        see it (the audit log); `on_full()` when a write fails for want of space, returning whether it freed some;
        `on_job(job)` when a job is added or its status changes (the job's record on disk).
        A damaged database (`PRAGMA quick_check` fails, or the file is no database) raises StoreDamaged."""
        self._on_event = on_event
        self._on_job = on_job
        self._on_full = on_full
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            check = [str(row[0]) for row in self._db.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise StoreDamaged(path, "; ".join(check[:3]))
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            if any(column[1] == "value" and column[3] for column in self._db.execute("PRAGMA table_info(metrics)")):
                self._db.executescript(f"BEGIN;{NAN_METRICS}COMMIT;")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if isinstance(exc, sqlite3.OperationalError) and not _damage(exc):
                raise
            raise StoreDamaged(path, str(exc)) from None
        except StoreDamaged:
            self._db.close()
            raise
        self._lock = threading.RLock()
        # Sites' rows in jobs, (state, round, error), as written through this store (the daemon is the only
        # writer): read on every task poll and heartbeat of every site, so they are answered from memory.
        self._site_states: dict[tuple[str, str], SiteRecord] = {}
        self._sites: dict[str, SiteRow] = {}  # the site registry, all of it (read from the database once)
        for row in self._db.execute("SELECT name, org, registered_at, last_heartbeat, running_jobs_json, not_after "
                                    "FROM sites"):
            self._sites[row[0]] = SiteRow(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])
        self._unwritten: set[str] = set()  # sites whose last heartbeat is not in the database yet
        self._unwritten_states: dict[tuple[str, str], SiteRecord] = {}  # the same for sites' job states
        self._flushed_at = time.monotonic()
        self._changed = threading.Condition(self._lock)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self.flush()
            self._db.close()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _write(self, sql: str, args: tuple[Any, ...] | list[tuple[Any, ...]] = ()) -> sqlite3.Cursor:
        """One statement (`executemany` when `args` is a list), tried again once if the disk was full and
        `on_full` freed some space."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if isinstance(args, list):
                        return self._db.executemany(sql, args)
                    return self._db.execute(sql, args)
                except sqlite3.OperationalError as exc:
                    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                    if attempt == 2 or not full or self._on_full is None or not self._on_full():
                        raise
            raise AssertionError("unreachable")

    def _write_all(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Several statements (each `executemany`) in one transaction: one commit, not one a row. Tried again once,
        like `_write`, when the disk was full and `on_full` freed some space (a failed transaction is rolled back)."""
        statements = [(sql, rows) for sql, rows in statements if rows]
        if not statements:
            return
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._db.execute("BEGIN")
                    for sql, rows in statements:
                        self._db.executemany(sql, rows)
                    self._db.execute("COMMIT")
                    return
                except sqlite3.Error as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                    if attempt == 2 or not full or self._on_full is None or not self._on_full():
                        raise

    # ------------------------------------------------------------------ jobs
    def add_job(self, job: JobRow, event: tuple[str, str, dict[str, Any]] | None = None) -> None:
        """Add `job`, and with it its first `event` (kind, message, data) under the same lock: no reader (the
        scheduler starting it) sees the job before that event, so "started" never comes before "submitted".
        The job and its event are written in one transaction: either both are stored or (an exception) neither.
        """
        statements: list[tuple[str, list[tuple[Any, ...]]]] = [(
            "INSERT INTO jobs (id, name, status, submitter, submitter_org, submitter_role, submitted_at, started_at, "
            "ended_at, round, rounds, workflow, min_sites, sites_json, wait_reason, error, bundle_sha256, spec_json) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(job.id, job.name, job.status, job.submitter, job.submitter_org, job.submitter_role, job.submitted_at,
              job.started_at, job.ended_at, job.round, job.rounds, job.workflow, job.min_sites, json.dumps(job.sites),
              job.wait_reason, job.error, job.bundle_sha256, json.dumps(job.spec))])]
        if event is not None:
            kind, message, data = event
            statements.append(("INSERT INTO events (job_id, time, kind, message, data_json) VALUES (?,?,?,?,?)",
                               [(job.id, time.time(), kind, message, json.dumps(data or {}))]))
        with self._changed:
            self._write_all(statements)
            if event is not None:
                if self._on_event is not None:
                    self._on_event(job.id, event[0], event[1], event[2] or {})
                self._changed.notify_all()
            self._job_changed(job.id)

    def update_job(self, job_id: str, **values: Any) -> None:
        allowed = {"status", "started_at", "ended_at", "round", "wait_reason", "error"}
        if not values or set(values) - allowed:
            raise ValueError(f"cannot update {sorted(set(values) - allowed)}")
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._lock:
            self._write(f"UPDATE jobs SET {cols} WHERE id = ?", (*values.values(), job_id))
            if "status" in values:
                self._job_changed(job_id)

    def _job_changed(self, job_id: str) -> None:
        if self._on_job is not None:
            job = self.get_job(job_id)
            if job is not None:
                self._on_job(job)

    _SET_SITE = "INSERT OR REPLACE INTO job_sites (job_id, site, state, round, error) VALUES (?,?,?,?,?)"

    def _site_row(self, job_id: str, site: str) -> SiteRecord | None:
        """(state, round, error) of `site` in `job_id`, from memory once read or set; the lock is held."""
        known = self._site_states.get((job_id, site))
        if known is None:
            row = self._db.execute("SELECT state, round, error FROM job_sites WHERE job_id = ? AND site = ?",
                                   (job_id, site)).fetchone()
            if row is not None:
                known = self._site_states[(job_id, site)] = (SiteState.parse(row[0]), int(row[1]), str(row[2]))
        return known

    def set_site_state(self, job_id: str, site: str, state: SiteState, round_no: int | None = None,
                       error: str | None = None) -> None:
        self.set_site_states(job_id, [site], state, round_no, error)

    def set_site_states(self, job_id: str, sites: list[str], state: SiteState, round_no: int | None = None,
                        error: str | None = None, unless: tuple[SiteState, ...] = ()) -> None:
        """Set the state of `sites` in `job_id` (round and error kept unless given), all in one transaction; a site
        whose state is in `unless` is left alone, and a row that would not change is not written again."""
        with self._lock:
            changed: dict[tuple[str, str], SiteRecord] = {}
            for site in sites:
                old = self._site_row(job_id, site)
                if old is not None and old[0] in unless:
                    continue
                old_round, old_error = (old[1], old[2]) if old else (-1, "")
                new = (state, old_round if round_no is None else round_no, old_error if error is None else error)
                if new != old:
                    changed[(job_id, site)] = new
            self._site_states.update(changed)
            self._unwritten_states.update(changed)
            if time.monotonic() - self._flushed_at >= HEARTBEAT_FLUSH_S:
                self.flush()

    def site_state(self, job_id: str, site: str) -> SiteState | None:
        """The state of `site` in job `job_id`, or None when it takes no part."""
        known = self._site_states.get((job_id, site))
        if known is None:
            with self._lock:
                known = self._site_row(job_id, site)
        return None if known is None else known[0]

    def _job(self, row: tuple[Any, ...]) -> JobRow:
        (jid, name, status, submitter, sorg, srole, sub_at, start_at, end_at, rnd, rounds, workflow, min_sites,
         sites_json, wait, error, sha, spec_json) = row
        job = JobRow(jid, name, JobStatus.parse(status), submitter, sorg, srole, sub_at, start_at, end_at, rnd, rounds,
                     workflow, min_sites, json.loads(sites_json), wait, error, sha, json.loads(spec_json))
        states = {site: (SiteState.parse(state), site_round, site_error)
                  for site, state, site_round, site_error in self._db.execute(
                      "SELECT site, state, round, error FROM job_sites WHERE job_id = ?", (jid,))}
        states.update({site: row for (job_id, site), row in self._unwritten_states.items() if job_id == jid})
        job.site_states = dict(sorted(states.items()))
        return job

    _JOB_COLUMNS = ("id, name, status, submitter, submitter_org, submitter_role, submitted_at, started_at, "
                    "ended_at, round, rounds, workflow, min_sites, sites_json, wait_reason, error, bundle_sha256, "
                    "spec_json")

    def get_job(self, job_id: str) -> JobRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return self._job(row) if row else None

    def list_jobs(self, statuses: tuple[JobStatus, ...] | None = None) -> list[JobRow]:
        with self._lock:
            sql = f"SELECT {self._JOB_COLUMNS} FROM jobs"
            args: tuple[Any, ...] = ()
            if statuses:
                sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
                args = statuses
            rows = self._db.execute(sql + " ORDER BY submitted_at", args).fetchall()
            return [self._job(r) for r in rows]

    # ------------------------------------------------------------------ events
    def add_event(self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> int:
        """Store an event, then record it through `on_event` (the audit log) before the lock is let go: whoever
        reads the event (a `job watch` that ends on "finished") finds it in the audit log already."""
        with self._changed:
            cur = self._write("INSERT INTO events (job_id, time, kind, message, data_json) VALUES (?,?,?,?,?)",
                                   (job_id, time.time(), kind, message, json.dumps(data or {})))
            seq = int(cur.lastrowid or 0)
            if self._on_event is not None:
                self._on_event(job_id, kind, message, data or {})
            self._changed.notify_all()
        return seq

    def events(self, after_seq: int = 0, job_id: str = "") -> list[EventRow]:
        sql = "SELECT seq, job_id, time, kind, message, data_json FROM events WHERE seq > ?"
        args: tuple[Any, ...] = (after_seq,)
        if job_id:
            sql += " AND job_id = ?"
            args = (after_seq, job_id)
        rows = self._run(sql + " ORDER BY seq", args).fetchall()
        return [EventRow(s, j, t, k, m, json.loads(d)) for s, j, t, k, m, d in rows]

    def wait_for_change(self, timeout_s: float) -> None:
        """Block until something is added (event or log line), or `timeout_s` passes."""
        with self._changed:
            self._changed.wait(timeout_s)

    # ------------------------------------------------------------------ metrics and logs
    _ADD_METRIC = "INSERT INTO metrics (job_id, site, round, name, value, step, time) VALUES (?,?,?,?,?,?,?)"

    def add_metrics(self, job_id: str, site: str, round_no: int, values: list[tuple[str, float, int | None]],
                    when: float | None = None) -> None:
        """A site's metric values (name, value, step); a NaN (a diverged loss) is stored as NULL and read back as
        NaN, an infinity as itself."""
        now = when or time.time()
        with self._lock:
            self._write(self._ADD_METRIC, [(job_id, site, round_no, n, _stored(v), s, now) for n, v, s in values])

    def add_round_metrics(self, job_id: str, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        """Every site's metrics of a round (site -> name -> value), in one transaction; a value the site already
        logged in that round (`fl.log`, same name and value) is not recorded twice."""
        now = time.time()
        logged = {(r[0], r[1], r[2]) for r in self._run(
            "SELECT site, name, value FROM metrics WHERE job_id = ? AND round = ?", (job_id, round_no)).fetchall()}
        self._write_all([(self._ADD_METRIC, [(job_id, site, round_no, name, _stored(value), None, now)
                                             for site, values in metrics.items() for name, value in values.items()
                                             if (site, name, _stored(value)) not in logged])])

    def metrics(self, job_id: str) -> list[tuple[str, int, str, float, int | None]]:
        """(site, round, name, value, step) in insertion order."""
        rows = self._run("SELECT site, round, name, value, step FROM metrics WHERE job_id = ? ORDER BY rowid",
                         (job_id,)).fetchall()
        return [(r[0], r[1], r[2], math.nan if r[3] is None else r[3], r[4]) for r in rows]

    def add_logs(self, job_id: str, site: str, lines: list[tuple[float, str]]) -> None:
        if not lines:
            return
        with self._changed:
            self._write("INSERT INTO logs (job_id, site, time, line) VALUES (?,?,?,?)",
                        [(job_id, site, t, line) for t, line in lines])
            self._changed.notify_all()

    def logs(self, job_id: str, site: str = "", after_id: int = 0) -> list[tuple[int, str, float, str]]:
        """(id, site, time, line) after `after_id`."""
        sql = "SELECT id, site, time, line FROM logs WHERE job_id = ? AND id > ?"
        args: tuple[Any, ...] = (job_id, after_id)
        if site:
            sql += " AND site = ?"
            args = (*args, site)
        return [(r[0], r[1], r[2], r[3]) for r in self._run(sql + " ORDER BY id", args).fetchall()]

    # ------------------------------------------------------------------ sites
    _SET_SITE_ROW = ("INSERT OR REPLACE INTO sites (name, org, registered_at, last_heartbeat, running_jobs_json, "
                     "not_after) VALUES (?,?,?,?,?,?)")

    def touch_site(self, name: str, org: str, not_after: float, running_jobs: list[str] | None = None,
                   register: bool = False) -> None:
        """A site was heard from. A registration (or a site not known yet) is written at once; a heartbeat is in
        memory at once and in the database with the next `flush`, at most `HEARTBEAT_FLUSH_S` later."""
        now = time.time()
        with self._lock:
            old = self._sites.get(name)
            row = SiteRow(name, org, now if register or old is None else old.registered_at, now,
                          list(running_jobs) if running_jobs is not None else (old.running_jobs if old else []),
                          not_after)
            if register or old is None:
                self._write(self._SET_SITE_ROW, self._site_values(row))
                self._unwritten.discard(name)
            else:
                self._unwritten.add(name)
            self._sites[name] = row
            if time.monotonic() - self._flushed_at >= HEARTBEAT_FLUSH_S:
                self.flush()

    @staticmethod
    def _site_values(row: SiteRow) -> tuple[Any, ...]:
        return (row.name, row.org, row.registered_at, row.last_heartbeat, json.dumps(row.running_jobs),
                row.not_after)

    def flush(self) -> None:
        """Write the heartbeats and sites' job states still only in memory, in one transaction (the daemon also
        calls it every second)."""
        with self._lock:
            self._flushed_at = time.monotonic()
            if self._unwritten or self._unwritten_states:
                self._write_all([(self._SET_SITE_ROW, [self._site_values(self._sites[n]) for n in self._unwritten]),
                                 (self._SET_SITE, [(job, site, *row)
                                                   for (job, site), row in self._unwritten_states.items()])])
                self._unwritten.clear()
                self._unwritten_states.clear()

    def sites(self) -> list[SiteRow]:
        with self._lock:
            return sorted(self._sites.values(), key=lambda row: row.name)

    def site(self, name: str) -> SiteRow | None:
        return self._sites.get(name)

    # ------------------------------------------------------------------ admins' certificates
    def record_admin(self, name: str, org: str, role: str, not_after: float) -> None:
        """An admin called with a certificate valid until `not_after` (what `flctl certs` lists for admins)."""
        self._write("INSERT OR REPLACE INTO admins (name, org, role, not_after, last_seen) VALUES (?,?,?,?,?)",
                    (name, org, role, not_after, time.time()))

    def admins(self) -> list[tuple[str, str, str, float, float]]:
        """(name, org, role, not_after, last_seen) of every admin the server has seen, by name."""
        return [(r[0], r[1], r[2], r[3], r[4]) for r in
                self._run("SELECT name, org, role, not_after, last_seen FROM admins ORDER BY name").fetchall()]

    def delete_job(self, job_id: str) -> None:
        """Remove an ended job and everything recorded about it (its sites' states, events, metrics, logs), in one
        transaction; its sites' states leave memory too."""
        with self._lock:
            for key in [k for k in self._site_states if k[0] == job_id]:
                self._site_states.pop(key, None)
                self._unwritten_states.pop(key, None)
            self._write_all([(f"DELETE FROM {table} WHERE {column} = ?", [(job_id,)]) for table, column in
                             (("job_sites", "job_id"), ("events", "job_id"), ("metrics", "job_id"),
                              ("logs", "job_id"), ("jobs", "id"))])

    def iter_job_ids(self) -> Iterator[str]:
        for (jid,) in self._run("SELECT id FROM jobs ORDER BY submitted_at").fetchall():
            yield jid
