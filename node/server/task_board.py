"""Where a running job's tasks wait for their sites, and where answers are routed back.

A workflow posts one task per round for a set of sites; each site's job process
long-polls `next_task`. Thread-safe; nothing here touches the network.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.node.jobs.job_status import JobStatus

INLINE_BYTES = 1024 * 1024
"""Models up to this size travel in memory: a task is read once for all its sites, a result goes to the job process
with the message that says it came. Bigger ones go through files in the job's folder, so the daemon never holds one."""


@dataclass(frozen=True)
class PostedTask:
    task_id: str
    kind: str  # the TaskKind
    round: int
    payload: Path
    meta: dict[str, Any]
    timeout_s: float
    data: bytes | None = None  # the payload's bytes, when it is at most INLINE_BYTES
    meta_json: str = "{}"  # `meta` as sent to every site


@dataclass
class _JobTasks:
    sites: set[str]
    current: dict[str, PostedTask] = field(default_factory=dict)
    answered: dict[str, set[str]] = field(default_factory=dict)
    given: dict[str, set[str]] = field(default_factory=dict)  # site -> every task id ever posted to it
    ended: JobStatus | None = None  # the final status once the job is over


class TaskBoard:
    def __init__(self) -> None:
        self._jobs: dict[str, _JobTasks] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # held for every read and change of the board
        # One condition per waiting (job, site), on the same lock: posting a task wakes only the sites it is
        # for (a thousand long polls on one condition would all wake for every post).
        self._waiters: dict[tuple[str, str], threading.Condition] = {}

    def _wake(self, job_id: str, sites: set[str] | list[str] | None = None) -> None:
        """Wake the long polls of `sites` in `job_id` (all of its sites when None); the lock is held."""
        wanted = None if sites is None else set(sites)
        for (job, site), cond in self._waiters.items():
            if job == job_id and (wanted is None or site in wanted):
                cond.notify_all()

    def open_job(self, job_id: str, sites: list[str]) -> None:
        with self._cond:
            self._jobs[job_id] = _JobTasks(set(sites))

    def close_job(self, job_id: str, status: JobStatus) -> None:
        """No more tasks: every waiting site is told the job ended with `status`."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                job.ended = status
                job.current.clear()
            self._wake(job_id)

    def forget(self, job_id: str) -> None:
        with self._cond:
            self._jobs.pop(job_id, None)
            self._wake(job_id)
            self._waiters = {key: cond for key, cond in self._waiters.items() if key[0] != job_id}

    def post(self, job_id: str, task: PostedTask, sites: list[str]) -> None:
        with self._cond:
            job = self._jobs[job_id]
            for site in sites:
                job.current[site] = task
                job.given.setdefault(site, set()).add(task.task_id)
            self._wake(job_id, sites)

    def takes_part(self, job_id: str, site: str) -> bool:
        with self._cond:
            job = self._jobs.get(job_id)
            return job is not None and site in job.sites

    def next_task(self, job_id: str, site: str, last_task_id: str, wait_s: float) -> PostedTask | JobStatus | None:
        """The site's next unanswered task; the final status when the job is over (UNKNOWN for a job the board does
        not hold); None after `wait_s`."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None:
                    return JobStatus.UNKNOWN
                if job.ended:
                    return job.ended
                task = job.current.get(site)
                if task is not None and task.task_id != last_task_id and \
                        task.task_id not in job.answered.get(site, set()):
                    return task
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                cond = self._waiters.setdefault((job_id, site), threading.Condition(self._lock))
                cond.wait(left)

    def open_task(self, job_id: str, site: str, task_id: str) -> PostedTask | None:
        """`task_id` when it is the site's current, unanswered task (another part of its model may be fetched);
        None otherwise."""
        with self._cond:
            job = self._jobs.get(job_id)
            task = None if job is None or job.ended else job.current.get(site)
            if task is None or task.task_id != task_id or task_id in job.answered.get(site, set()):  # type: ignore[union-attr]
                return None
            return task

    def was_given(self, job_id: str, site: str, task_id: str) -> bool:
        """Whether `task_id` was ever posted to `site` in this job (answered, withdrawn or still open)."""
        with self._cond:
            job = self._jobs.get(job_id)
            return job is not None and task_id in job.given.get(site, set())

    def expects(self, job_id: str, site: str, task_id: str) -> bool:
        """Whether `task_id` is the site's current, unanswered task (what `answer` would accept now)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.ended:
                return False
            task = job.current.get(site)
            return task is not None and task.task_id == task_id and task_id not in job.answered.get(site, set())

    def answer(self, job_id: str, site: str, task_id: str) -> bool:
        """Mark `task_id` answered by `site`; False when it is not the site's current task (late or duplicate)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.ended:
                return False
            task = job.current.get(site)
            if task is None or task.task_id != task_id or task_id in job.answered.get(site, set()):
                return False
            job.answered.setdefault(site, set()).add(task_id)
            del job.current[site]
            return True

    def cancel(self, job_id: str, task_id: str, sites: list[str]) -> None:
        """Withdraw `task_id` from `sites` that did not answer in time."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return
            for site in sites:
                if site in job.current and job.current[site].task_id == task_id:
                    del job.current[site]

