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


@dataclass(frozen=True)
class PostedTask:
    task_id: str
    name: str
    round: int
    payload: Path
    meta: dict[str, Any]
    timeout_s: float


@dataclass
class _JobTasks:
    sites: set[str]
    current: dict[str, PostedTask] = field(default_factory=dict)
    answered: dict[str, set[str]] = field(default_factory=dict)
    ended: str = ""  # "", or the final status once the job is over


class TaskBoard:
    def __init__(self) -> None:
        self._jobs: dict[str, _JobTasks] = {}
        self._cond = threading.Condition()

    def open_job(self, job_id: str, sites: list[str]) -> None:
        with self._cond:
            self._jobs[job_id] = _JobTasks(set(sites))

    def close_job(self, job_id: str, status: str) -> None:
        """No more tasks: every waiting site is told the job ended with `status`."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                job.ended = status
                job.current.clear()
            self._cond.notify_all()

    def forget(self, job_id: str) -> None:
        with self._cond:
            self._jobs.pop(job_id, None)

    def post(self, job_id: str, task: PostedTask, sites: list[str]) -> None:
        with self._cond:
            job = self._jobs[job_id]
            for site in sites:
                job.current[site] = task
            self._cond.notify_all()

    def takes_part(self, job_id: str, site: str) -> bool:
        with self._cond:
            job = self._jobs.get(job_id)
            return job is not None and site in job.sites

    def next_task(self, job_id: str, site: str, last_task_id: str, wait_s: float) -> PostedTask | str | None:
        """The site's next unanswered task; the final status (str) when the job is over; None after `wait_s`."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None:
                    return "UNKNOWN"
                if job.ended:
                    return job.ended
                task = job.current.get(site)
                if task is not None and task.task_id != last_task_id and \
                        task.task_id not in job.answered.get(site, set()):
                    return task
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

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

