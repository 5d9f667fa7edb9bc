"""How values read in the console's tables: pure functions of the value and the current time."""

from __future__ import annotations

import time

from rich.text import Text

from flctl.node.admin.admin_types import JobInfo, SiteInfo


def literal(value: str) -> Text:
    """A table cell or column shown as written: a DataTable reads a plain string as markup, so a peer's
    `[link=...]` would become a link and `[b]` a style."""
    return Text(value)


def age(seconds: float) -> str:
    """A short age: 4s, 3m12s, 2h05m, 3d."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def heartbeat(site: SiteInfo, now: float) -> str:
    return f"{age(now - site.last_heartbeat)} ago" if site.last_heartbeat else "never"


def expiry(not_after: float, now: float) -> str:
    """The date a certificate expires, and how soon when that is within 30 days."""
    if not not_after:
        return "-"
    day = time.strftime("%Y-%m-%d", time.gmtime(not_after))
    left = not_after - now
    if left <= 0:
        return f"{day} (expired)"
    if left < 30 * 86400:
        return f"{day} (in {age(left)})"
    return day


def duration(job: JobInfo, now: float) -> str:
    if not job.started_at:
        return "-"
    return age((job.ended_at or now) - job.started_at)


def rounds(job: JobInfo) -> str:
    return f"{job.rounds_done}/{job.rounds}" if job.rounds else "-"


def online(site: SiteInfo) -> str:
    return "online" if site.online else "offline"
