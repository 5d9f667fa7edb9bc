"""Everything the server's services share, passed explicitly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.node.config.kit import NodeKit
from flctl.node.security.audit import AuditLog
from flctl.node.security.authz import PolicyFile
from flctl.node.security.revocation import Revocations
from flctl.node.server.disk_guard import DiskGuard
from flctl.node.server.job_runner import JobRunner
from flctl.node.server.site_hub import SiteHub
from flctl.node.server.store import SiteRow, Store
from flctl.node.server.task_board import TaskBoard
from flctl.node.server.traffic import Traffic
from flctl.node.site.placement import Grant, SiteLoad


@dataclass
class ServerContext:
    kit: NodeKit
    workspace: Path
    store: Store
    board: TaskBoard
    hub: SiteHub
    runner: JobRunner
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    audit: AuditLog
    policy: PolicyFile
    revocations: Revocations
    disk: DiskGuard
    max_bundle_bytes: int = 512 * 1024 * 1024
    max_model_bytes: int = 64 * 1024 * 1024 * 1024
    isolation: dict[str, str] = field(default_factory=dict)
    """What each site reported at registration about how it confines job scripts (kept in memory only)."""
    traffic: Traffic = field(default_factory=Traffic)
    """Model bytes sent to and received from sites since the server started (the Prometheus endpoint reads it)."""
    relayed: dict[str, list[Any]] = field(default_factory=dict)
    """What each relay said in its last heartbeat about the sites and relays below it (`pb.SiteInfo`, in memory)."""
    resources: dict[str, SiteLoad] = field(default_factory=dict)
    """What each site offers jobs and what its running jobs hold, from its last heartbeat, plus the jobs the
    scheduler started there since (`flctl.node.site.placement`; in memory)."""
    pending: dict[str, dict[str, tuple[Grant, float]]] = field(default_factory=dict)
    """By site: the grants the scheduler counted for jobs it started there that the site has not reported holding
    yet, with when (`scheduler.with_pending`)."""

    @property
    def parents(self) -> dict[str, str]:
        """The project's tree from the server's kit: each relay and site under a relay, to that relay."""
        config = self.kit.info.config
        return dict(getattr(config, "parents", None) or {})

    @property
    def project(self) -> str:
        return self.kit.info.project

    def online(self, site: SiteRow, now: float | None = None, since: float = 0.0) -> bool:
        """Heard from within the heartbeat timeout; silence before `since` (e.g. this daemon's start) is forgiven."""
        return ((now or time.time()) - max(site.last_heartbeat, since)) <= self.heartbeat_timeout_s

    def online_sites(self, since: float = 0.0) -> list[str]:
        now = time.time()
        return [s.name for s in self.store.sites() if self.online(s, now, since)]

    def jobs_dir(self) -> Path:
        return self.workspace / "jobs"
