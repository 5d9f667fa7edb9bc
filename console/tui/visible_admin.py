"""The console's admin client with every string a peer could have written made visible: job names, sites'
failure reasons, log lines, metric names, events' messages, GPU names (flctl.console.visible_text). Every screen
reads the federation through it, so none shows a control sequence a site or another admin sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from flctl.console.tui.admin_api import Admin, Connect
from flctl.console.visible_text import visible_value
from flctl.node.admin.admin_types import Event, Identity, JobInfo, LogEntry, SiteInfo


class VisibleAdmin:
    """Satisfies flctl.console.tui.admin_api.Admin over another Admin."""

    def __init__(self, admin: Admin) -> None:
        self._admin = admin

    def whoami(self) -> Identity:
        return visible_value(self._admin.whoami())

    def submit_job(self, folder: Path) -> str:
        return visible_value(self._admin.submit_job(folder))

    def list_jobs(self) -> list[JobInfo]:
        return visible_value(self._admin.list_jobs())

    def get_job(self, job_id: str) -> JobInfo:
        return visible_value(self._admin.get_job(job_id))

    def abort_job(self, job_id: str) -> JobInfo:
        return visible_value(self._admin.abort_job(job_id))

    def download_job(self, job_id: str, out_dir: Path) -> Path:
        return self._admin.download_job(job_id, out_dir)

    def logs(self, job_id: str, site: str = "", follow: bool = False) -> Iterator[LogEntry]:
        return (visible_value(entry) for entry in self._admin.logs(job_id, site, follow))

    def list_sites(self) -> list[SiteInfo]:
        return visible_value(self._admin.list_sites())

    def watch(self, job_id: str = "", after_seq: int = 0) -> Iterator[Event]:
        return (visible_value(event) for event in self._admin.watch(job_id, after_seq))

    def close(self) -> None:
        self._admin.close()


def visible_connect(connect: Connect) -> Connect:
    """`connect`, whose clients are VisibleAdmins."""
    return lambda: VisibleAdmin(connect())
