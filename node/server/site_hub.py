"""Commands for site daemons (start a job, stop a job), each delivered over the site's own stream."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

Command = dict[str, Any]  # {"start": {...}} or {"stop": {...}}


ACTIVE_CHECK_S = 60.0
"""How often an idle command stream checks that its call is still active, as a safety net: the call's end, a newer
stream for the site, a new CRL (`recheck`) and `close()` each wake it at once."""
_RECHECK: Command = {}
"""Put in a stream's queue to make it check `active()` now (an empty command is never pushed)."""


class SiteHub:
    def __init__(self) -> None:
        self._queues: dict[str, queue.Queue[Command | None]] = {}
        self._lock = threading.Lock()

    def _queue(self, site: str) -> queue.Queue[Command | None]:
        with self._lock:
            return self._queues.setdefault(site, queue.Queue())

    def push(self, site: str, command: Command) -> None:
        self._queue(site).put(command)

    def stream(self, site: str, active: Callable[[], bool],
               on_end: Callable[[Callable[[], None]], object] | None = None) -> Iterator[Command]:
        """Commands for `site` as they come, while `active()`; a newer stream for the same site ends this one.
        A command taken by a stream whose call has ended (a site that is reconnecting) is put back for the next.
        `on_end(wake)` registers `wake` to be called when the call ends (gRPC's `add_callback`), so a thousand idle
        streams do not poll."""
        with self._lock:
            old = self._queues.get(site)
            fresh: queue.Queue[Command | None] = queue.Queue()
            if old is not None:
                while True:  # carry over what was not delivered yet
                    try:
                        item = old.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None and item is not _RECHECK:
                        fresh.put(item)
                old.put(None)
            self._queues[site] = fresh
        if on_end is not None:
            on_end(lambda: fresh.put(_RECHECK))
        while active():
            try:
                item = fresh.get(timeout=ACTIVE_CHECK_S)
            except queue.Empty:
                continue
            if item is None:
                return
            if item is _RECHECK:
                continue
            if not active():  # the site went away (it may be reconnecting): the command waits for its next stream
                self._put_back(site, item)
                return
            try:
                yield item
            except GeneratorExit:  # closed instead of asked for more: the send failed, the call is over
                self._put_back(site, item)  # a start a site already runs is a no-op, so twice is harmless
                raise

    def _put_back(self, site: str, item: Command) -> None:
        """`item` first in the site's queue again, so commands keep their order (a stop never overtakes its start)."""
        q = self._queue(site)
        with q.mutex:
            q.queue.appendleft(item)
            q.unfinished_tasks += 1
            q.not_empty.notify()

    def recheck(self) -> None:
        """Make every stream check now that its call is still active (a site's certificate may have been revoked)."""
        with self._lock:
            for q in self._queues.values():
                q.put(_RECHECK)

    def close(self) -> None:
        with self._lock:
            for q in self._queues.values():
                q.put(None)
