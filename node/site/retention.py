"""A site's ended jobs' workspaces (`WORKSPACE/jobs/ID`) are removed once nothing was written to them for
`retention_days` (the site's `local/resources.yml`), at start and every hour; a running job's never."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Container
from pathlib import Path

log = logging.getLogger("flctl.site")
SWEEP_S = 3600.0
DAY_S = 86400.0


def last_written(folder: Path) -> float:
    """When anything directly in `folder` (the job's log, its script's process group, the folder) last changed."""
    times = [folder.stat().st_mtime]
    for entry in folder.iterdir():
        try:
            times.append(entry.stat().st_mtime)
        except OSError:
            continue
    return max(times)


def sweep(jobs_dir: Path, days: float, running: Container[str], on_removed: Callable[[str, float], object],
          now: float | None = None) -> list[str]:
    """Remove the job workspaces under `jobs_dir` not `running` and unchanged for `days`; their ids."""
    cutoff = (time.time() if now is None else now) - days * DAY_S
    removed: list[str] = []
    if not jobs_dir.is_dir():
        return removed
    for folder in sorted(jobs_dir.iterdir()):
        if not folder.is_dir() or folder.is_symlink() or folder.name in running:
            continue
        try:
            written = last_written(folder)
            if written >= cutoff:
                continue
            shutil.rmtree(folder)
        except OSError as exc:
            log.warning("could not remove the workspace of ended job %s: %s", folder.name, exc)
            continue
        removed.append(folder.name)
        log.info("removed the workspace of ended job %s (unchanged for more than %g days)", folder.name, days)
        on_removed(folder.name, written)
    return removed
