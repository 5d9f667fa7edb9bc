"""Room to record what happened when the disk under the server's workspace fills up.

The server keeps a reserve file, `WORKSPACE/disk-reserve` (`disk_reserve_mb` in the server's
`local/resources.yml`, default 16). When a write in the workspace fails for want of space (a
site's result, the store, the audit log), the reserve is deleted: the store and the audit log
then have room to record that the running jobs failed and why, instead of failing half-way
themselves. While the reserve is spent the server takes no results and starts no jobs; once
there is room for it again (twice its size free: someone freed space), it is taken back and
the server works as before.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("flctl.server")
RESERVE_FILE = "disk-reserve"
T = TypeVar("T")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed for want of space (an OSError, or SQLite's SQLITE_FULL)."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskGuard:
    def __init__(self, workspace: Path, size: int, on_full: Callable[[], object] = lambda: None) -> None:
        """`on_full()` runs (in a thread of its own) each time the disk is found full while it was not."""
        self.workspace = workspace
        self.path = workspace / RESERVE_FILE
        self.size = size
        self._on_full = on_full
        self._lock = threading.Lock()
        self.full = False

    def arm(self) -> bool:
        """Put the reserve in place when it is missing and twice its size is free; whether it is in place."""
        with self._lock:
            try:
                if self.path.stat().st_size >= self.size:
                    self.full = False
                    return True
            except FileNotFoundError:
                pass
            if shutil.disk_usage(self.workspace).free < 2 * self.size:
                return False
            try:
                with open(self.path, "wb") as handle:
                    os.posix_fallocate(handle.fileno(), 0, max(1, self.size))
            except OSError:
                self.path.unlink(missing_ok=True)
                return False
            if self.full:
                log.info("there is room in %s again: results are taken and jobs start as before", self.workspace)
            self.full = False
            return True

    def release(self) -> bool:
        """The disk is full: delete the reserve, so what happens next can be recorded. Whether that freed space."""
        with self._lock:
            newly = not self.full
            self.full = True
            try:
                self.path.unlink()
                freed = True
            except FileNotFoundError:
                freed = False
        if newly:
            log.error("the disk under %s is full: running jobs fail, no results are taken and no job starts until "
                      "space is freed there", self.workspace)
            threading.Thread(target=self._on_full, daemon=True, name="disk-full").start()
        return freed

    def call(self, write: Callable[[], T]) -> T:
        """`write()`; when it fails for want of space, release the reserve and try it once more."""
        try:
            return write()
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc) or not self.release():
                raise
        return write()
