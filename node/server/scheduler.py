"""Decides when a submitted job starts, and records why it waits.

A job starts when its named sites are all online (or, for `sites: all`, when at
least `min_sites` are), the server runs fewer than `max_concurrent_jobs`, the disk
under its workspace is not full (see `flctl.node.server.disk_guard`), and each of its sites
has what job.yml's `resources` asks free, by what the site reported in its last heartbeat
(`flctl.node.site.placement`). A named site that can never hold it fails the job, saying why;
under `sites: all` such a site is left out. The site places the job again when it starts it
(and queues it if it does not fit there after all): the server's view is a heartbeat old.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from flctl.node.jobs.job_status import JobStatus
from flctl.node.server.context import ServerContext
from flctl.node.server.store import JobRow, Store
from flctl.node.site.placement import Ask, Grant, SiteLoad, never_fits, place, why_waiting
from flctl.provisioner.relay_tree import top_of

log = logging.getLogger("flctl.server")


def placement(job: JobRow, online: list[str], parents: dict[str, str] | None = None
              ) -> tuple[list[str] | None, str]:
    """Pure: the sites to run `job` on now, or None and the reason it must wait. A named site under a relay is
    reached through the relay the server sees (`parents`, the project's tree): the job runs on that relay."""
    if job.sites == "all":
        if len(online) >= job.min_sites:
            return sorted(online), ""
        return None, f"waiting for {job.min_sites} sites online ({len(online)} online)"
    # A site connected to the server itself (its relay is down, failover: server) is run on directly.
    named = list(dict.fromkeys(s if s in online else top_of(parents or {}, s) for s in job.sites))
    missing = [s for s in named if s not in online]
    if not missing:
        return named, ""
    return None, f"waiting for {', '.join(missing)} to come online"


def job_ask(job: JobRow) -> Ask:
    """What the job's resources ask of each site (nothing, for a spec that does not read: its job fails elsewhere)."""
    from pydantic import ValidationError

    from flctl.node.jobs.job_spec import Resources

    try:
        return Ask.of(Resources.model_validate(job.spec.get("resources") or {}))
    except (ValidationError, ValueError):
        return Ask()


def resource_fit(ask: Ask, sites: list[str], loads: dict[str, SiteLoad], named: bool, min_sites: int
                 ) -> tuple[list[str] | None, str, str]:
    """Pure: the sites to run on now by their reported resources (sites that report none are not checked), or
    None with why the job waits, or None and why it can never run (a named site can never hold it)."""
    if ask.empty:
        return sites, "", ""
    never = {s: why for s in sites if s in loads and (why := never_fits(loads[s].capacity, ask))}
    if never and named:
        site, why = next(iter(never.items()))
        return None, "", f"{site} can never run it: {why}"
    sites = [s for s in sites if s not in never]
    if len(sites) < min_sites:
        site, why = next(iter(never.items()))
        return None, (f"waiting for {min_sites} sites that can hold what the job asks ({ask.describe()}); "
                      f"{len(never)} online cannot ({site}: {why})"), ""
    busy = [f"{why} at {s}" for s in sites if s in loads and (why := why_waiting(loads[s], ask))]
    if busy:
        return None, f"waiting for {'; '.join(busy)}", ""
    return sites, "", ""


PENDING_S = 30.0
"""How long the server counts a job it started at a site that has not reported holding its resources yet (the site
fetches the bundle first, or queues the job itself)."""


def hold(loads: dict[str, SiteLoad], job_id: str, ask: Ask, sites: list[str],
         pending: dict[str, dict[str, tuple[Grant, float]]] | None = None, now: float = 0.0) -> None:
    """Count what the job takes at its sites until they report holding it (`with_pending`)."""
    for site in sites:
        load = loads.get(site)
        grant = place(load, ask, job_id) if load is not None and not ask.empty else None
        if load is not None and grant is not None:
            loads[site] = replace(load, grants=(*load.grants, grant))
            if pending is not None:
                pending.setdefault(site, {})[job_id] = (grant, now)


def with_pending(load: SiteLoad, pending: dict[str, tuple[Grant, float]], running: set[str], now: float
                 ) -> SiteLoad:
    """Pure: a site's report with the grants of jobs started there that it does not hold yet (a heartbeat sent
    before the job was placed), while they run and for `PENDING_S`; `pending` loses those that are done with."""
    held = {g.job_id for g in load.grants}
    for job_id, (_, since) in list(pending.items()):
        if job_id in held or job_id not in running or now - since > PENDING_S:
            del pending[job_id]
    return replace(load, grants=(*load.grants, *(grant for grant, _ in pending.values()))) if pending else load


def refuse(store: Store, job_id: str, reason: str) -> None:
    """A job that can never run where it must fails, saying why."""
    store.update_job(job_id, status=JobStatus.FAILED, ended_at=time.time(), error=reason, wait_reason="")
    store.add_event(job_id, JobStatus.FAILED.event_kind, f"job failed: {reason}",
                    {"status": JobStatus.FAILED, "error": reason})


def fail_start(store: Store, job_id: str, exc: BaseException) -> None:
    """A job the server could not start fails, saying why (the runner has undone what it began)."""
    reason = f"the server could not start the job: {type(exc).__name__}: {exc}"
    try:
        store.update_job(job_id, status=JobStatus.FAILED, ended_at=time.time(), error=reason, wait_reason="")
        store.add_event(job_id, JobStatus.FAILED.event_kind, f"job failed: {reason}",
                        {"status": JobStatus.FAILED, "error": reason})
    except Exception:
        log.exception("could not mark job %s failed", job_id)


class Scheduler:
    def __init__(self, ctx: ServerContext, max_concurrent_jobs: int) -> None:
        self._ctx = ctx
        self._max = max_concurrent_jobs
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="scheduler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def poke(self) -> None:
        """Something changed (a job submitted or ended, a site came online): look again now."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if not self._stop.is_set():
                try:
                    self.schedule_once()
                except Exception:  # the disk is full, the store failed, a bug: log it and try again at the next turn
                    log.exception("could not schedule jobs (trying again in a second)")

    def schedule_once(self) -> None:
        store = self._ctx.store
        disk = self._ctx.disk
        disk_full = disk.full and not disk.arm()  # takes the reserve back once there is room again
        online = self._ctx.online_sites()
        running = len(self._ctx.runner.running())
        for job in store.list_jobs((JobStatus.SUBMITTED,)):
            if disk_full:
                reason = f"waiting for disk space on the server ({disk.workspace} is full)"
            elif running >= self._max:
                reason = f"waiting for a free slot ({running} of {self._max} jobs running)"
            else:
                sites, reason = placement(job, online, self._ctx.parents)
                if sites is not None:
                    ask = job_ask(job)
                    sites, reason, never = resource_fit(ask, sites, self._ctx.resources, job.sites != "all",
                                                        job.min_sites)
                    if never:
                        refuse(store, job.id, f"the job cannot run: {never}")
                        continue
                if sites is not None:
                    try:
                        self._ctx.runner.start(job, sites)
                    except Exception as exc:
                        log.exception("could not start job %s", job.id)
                        fail_start(self._ctx.store, job.id, exc)
                        continue
                    hold(self._ctx.resources, job.id, ask, sites, self._ctx.pending, time.time())
                    running += 1
                    continue
            if reason != job.wait_reason:
                store.update_job(job.id, wait_reason=reason)
                store.add_event(job.id, "waiting", reason, {"reason": reason})
