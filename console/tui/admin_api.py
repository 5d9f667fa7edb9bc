"""What the console needs from an admin client: `flctl.node.admin.admin_client.AdminClient` satisfies it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from flctl.node.admin.admin_types import Event, Identity, JobInfo, LogEntry, SiteInfo


class Admin(Protocol):
    def whoami(self) -> Identity: ...

    def submit_job(self, folder: Path) -> str: ...

    def list_jobs(self) -> list[JobInfo]: ...

    def get_job(self, job_id: str) -> JobInfo: ...

    def abort_job(self, job_id: str) -> JobInfo: ...

    def download_job(self, job_id: str, out_dir: Path) -> Path: ...

    def logs(self, job_id: str, site: str = "", follow: bool = False) -> Iterator[LogEntry]: ...

    def list_sites(self) -> list[SiteInfo]: ...

    def watch(self, job_id: str = "", after_seq: int = 0) -> Iterator[Event]: ...

    def close(self) -> None: ...


Connect = Callable[[], Admin]
"""Opens a fresh client (a new channel): called at start and again after the server went away."""
