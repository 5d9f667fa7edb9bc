"""Pure: which alert conditions hold, and which alerts to fire or clear. No I/O: `alerting` gathers the facts and
sends what comes out.

An alert is keyed by its condition and its subject (`site_offline` of site-2, `job_failed` of job 3f2a...): it
fires once when its condition starts to hold and clears (a `resolved` notice) when it stops; while it holds,
nothing more is sent, however many checks see it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Alert:
    condition: str  # site_offline, job_failed, cert_expiring or disk_low
    subject: str  # the site, the job id, the participant, the workspace
    message: str
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.condition, self.subject


@dataclass(frozen=True)
class FailedJob:
    id: str
    name: str
    error: str


@dataclass(frozen=True)
class CertLeft:
    name: str
    kind: str
    days_left: float


@dataclass(frozen=True)
class Facts:
    """What one check saw."""

    offline_sites: tuple[str, ...] = ()
    failed_jobs: tuple[FailedJob, ...] = ()
    certificates: tuple[CertLeft, ...] = ()
    workspace: str = ""
    disk_free_bytes: int | None = None
    disk_full: bool = False


def holding(facts: Facts, conditions: Collection[str], cert_days: float, disk_low_mb: float) -> dict[tuple[str, str],
                                                                                                       Alert]:
    """Every alert whose condition holds in `facts`, among the `conditions` asked for."""
    found: list[Alert] = []
    if "site_offline" in conditions:
        found += [Alert("site_offline", site, f"site {site} is offline (no heartbeat within the timeout)",
                        {"site": site}) for site in facts.offline_sites]
    if "job_failed" in conditions:
        found += [Alert("job_failed", job.id, f"job {job.name} ({job.id}) failed: {job.error or 'no reason given'}",
                        {"job_id": job.id, "name": job.name, "error": job.error}) for job in facts.failed_jobs]
    if "cert_expiring" in conditions:
        found += [Alert("cert_expiring", cert.name,
                        f"the certificate of {cert.kind} {cert.name} " + (
                            "has expired" if cert.days_left < 0 else f"expires in {cert.days_left:.0f} days"),
                        {"name": cert.name, "kind": cert.kind, "days_left": round(cert.days_left, 2)})
                  for cert in facts.certificates if cert.days_left < cert_days]
    if "disk_low" in conditions and facts.disk_free_bytes is not None:
        low = facts.disk_full or facts.disk_free_bytes < disk_low_mb * MIB
        if low:
            free_mb = facts.disk_free_bytes / MIB
            found.append(Alert("disk_low", facts.workspace, f"the disk under {facts.workspace} has {free_mb:.0f} MB "
                               f"free (alerting under {disk_low_mb:g} MB)" + ("; it is full" if facts.disk_full
                                                                              else ""),
                               {"workspace": facts.workspace, "free_mb": round(free_mb, 1), "full": facts.disk_full}))
    return {alert.key: alert for alert in found}


@dataclass
class AlertBook:
    """The alerts fired and not cleared yet; `update` says what changed since the last check."""

    active: dict[tuple[str, str], Alert] = field(default_factory=dict)

    def update(self, now_holding: dict[tuple[str, str], Alert]) -> tuple[list[Alert], list[Alert]]:
        """(alerts to fire: holding now, not before; alerts to clear: held before, not now), in a stable order."""
        fire = [now_holding[key] for key in sorted(now_holding.keys() - self.active.keys())]
        clear = [self.active[key] for key in sorted(self.active.keys() - now_holding.keys())]
        for alert in fire:
            self.active[alert.key] = alert
        for alert in clear:
            del self.active[alert.key]
        return fire, clear
