"""What the admin client returns: plain dataclasses, the same for the CLI, the TUI and scripts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flctl.node.jobs.job_status import ENDED, JobStatus, SiteState, ends_job
from flctl.node.site.placement import SiteLoad

DOWNLOAD_SIZE_HEADER = "flctl-download-size"  # gRPC metadata: the artifacts archive's size, for a progress bar


@dataclass(frozen=True)
class Identity:
    name: str
    org: str
    kind: str
    role: str
    project: str
    not_after: float
    notices: tuple[str, ...] = ()
    """What the server's operator must know, one sentence each (a damaged audit tail it set aside)."""


@dataclass(frozen=True)
class JobSite:
    name: str
    state: SiteState
    round: int
    error: str


@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    status: JobStatus
    submitter: str
    submitter_org: str
    submitted_at: float
    started_at: float
    ended_at: float
    round: int
    rounds: int
    workflow: str
    min_sites: int
    sites: list[JobSite] = field(default_factory=list)
    wait_reason: str = ""
    error: str = ""
    last_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    artifacts: str = ""
    reports: dict[str, Any] = field(default_factory=dict)
    """What the workflow reported, by name (`cross_site_eval`: the matrix); filled by `get_job` only."""
    compat: str = ""
    """job.yml's app.compat: another framework's Client API the script runs under ("nvflare"); "" for none."""

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def rounds_done(self) -> int:
        """Completed rounds: `round` is the round in progress (or the last one, once ended)."""
        if self.status == JobStatus.FINISHED:
            return self.rounds
        return max(self.round, 0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rounds_done"] = self.rounds_done
        return data


@dataclass(frozen=True)
class SiteInfo:
    name: str
    org: str
    online: bool
    last_heartbeat: float
    running_jobs: list[str]
    not_after: float
    isolation: str = ""
    """How the site confines job scripts ("landlock v7", "user nobody", "none"...); "" when not reported."""
    parent: str = ""
    """The relay the site (or relay) connects to; "" for the server."""
    resources: SiteLoad | None = None
    """What the site offers jobs (cores, memory, GPUs) and what its running jobs hold; None when not reported."""


@dataclass(frozen=True)
class CertificateInfo:
    """A participant's certificate as the server knows it (`flctl certs`)."""

    name: str
    kind: str
    """server, site or admin."""
    org: str
    role: str
    not_after: float
    last_seen: float
    """When a connection last showed it (an admin's last call, a site's last heartbeat); 0 for the server's own."""

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / 86400


@dataclass(frozen=True)
class Event:
    seq: int
    job_id: str
    time: float
    kind: str
    message: str
    data: dict[str, Any]

    @property
    def ends_job(self) -> bool:
        return ends_job(self.kind)


@dataclass(frozen=True)
class MetricValue:
    """One metric value a site reported in a job: `fl.log` (with the script's step, or none) or its answer's."""

    site: str
    round: int
    name: str
    value: float
    step: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "round": self.round, "name": self.name, "value": self.value, "step": self.step}


@dataclass(frozen=True)
class LogEntry:
    site: str
    time: float
    line: str
