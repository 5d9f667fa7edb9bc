"""The site's hold on its resources: the grant of each running job (`placement.Grant`), the jobs waiting for theirs,
and what the site reports of both in its heartbeats. Thread-safe: each job starts on a thread of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from flctl.node.site import gpu_inventory
from flctl.node.site.placement import Ask, Capacity, Gpu, Grant, SiteLoad, place, why_waiting

RECHECK_S = 1.0
USAGE_EVERY_S = 5.0
"""GPU memory in use is asked of the driver at most this often (heartbeats may come faster)."""


class JobSlots:
    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self._grants: dict[str, Grant] = {}
        self._waiting: set[str] = set()
        self._room = threading.Condition()
        self._released = 0  # grants released so far: a waiter that saw this many has missed none
        self._usage: dict[int, Gpu] = {}
        self._usage_at = float("-inf")

    def load(self) -> SiteLoad:
        with self._room:
            return SiteLoad(self.capacity, tuple(self._grants.values()), len(self._waiting))

    def acquire(self, job_id: str, ask: Ask, cancelled: threading.Event, on_wait: Callable[[str], object]
                ) -> Grant | None:
        """The job's grant once it fits (the caller checked that it can: `placement.never_fits`), waiting while it
        does not; `on_wait(reason)` each time what it waits for changes. None when `cancelled` is set first."""
        said = ""
        while not cancelled.is_set():
            with self._room:
                load = SiteLoad(self.capacity, tuple(self._grants.values()))
                grant = place(load, ask, job_id)
                if grant is not None:
                    self._grants[job_id] = grant
                    self._waiting.discard(job_id)
                    return grant
                self._waiting.add(job_id)
                seen = self._released
            reason = why_waiting(load, ask)
            if reason != said:  # said outside the lock: the caller may take its time (a call to the server)
                said = reason
                on_wait(reason)
            with self._room:
                if self._released == seen:  # nothing was freed meanwhile
                    self._room.wait(RECHECK_S)
        with self._room:
            self._waiting.discard(job_id)
        return None

    def release(self, job_id: str) -> None:
        """The job's process ended: what it held is free for the jobs waiting."""
        with self._room:
            self._grants.pop(job_id, None)
            self._released += 1
            self._room.notify_all()

    def report(self) -> SiteLoad:
        """`load()` with each GPU's used and free memory as the driver says now (kept as they were when it does
        not answer)."""
        load = self.load()
        if self.capacity.gpus and time.monotonic() - self._usage_at >= USAGE_EVERY_S:
            self._usage = gpu_inventory.gpu_usage([g.index for g in self.capacity.gpus]) or self._usage
            self._usage_at = time.monotonic()
        usage = self._usage
        if not usage:
            return load
        gpus = tuple(replace(g, used_mb=usage[g.index].used_mb, free_mb=usage[g.index].free_mb)
                     if g.index in usage else g for g in self.capacity.gpus)
        return replace(load, capacity=replace(self.capacity, gpus=gpus))
