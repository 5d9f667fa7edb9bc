"""The one place protobuf messages become domain values and back. Protobuf types never leave here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flctl.node.admin import admin_types as t
from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.site.placement import SiteLoad
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.resources_serde import ResourcesRefused, load_to_pb, reported

if TYPE_CHECKING:  # the CLI uses this module without the server's store (and sqlite)
    from flctl.node.server.certificates import KnownCertificate
    from flctl.node.server.store import EventRow, JobRow, SiteRow


def job_to_pb(job: JobRow, last_metrics: dict[str, dict[str, float]], artifacts: str,
              reports_json: dict[str, str] | None = None) -> pb.JobInfo:
    return pb.JobInfo(
        id=job.id, name=job.name, status=job.status, submitter=job.submitter, submitter_org=job.submitter_org,
        submitted_at=job.submitted_at, started_at=job.started_at, ended_at=job.ended_at, round=job.round,
        rounds=job.rounds, workflow=job.workflow, min_sites=job.min_sites,
        sites=[pb.SiteState(name=s, state=st, round=r, error=e) for s, (st, r, e) in job.site_states.items()],
        wait_reason=job.wait_reason, error=job.error, last_metrics_json=json.dumps(last_metrics), artifacts=artifacts,
        reports_json=reports_json or {}, compat=_compat(job.spec))


def _compat(spec: dict[str, Any]) -> str:
    """job.yml's app.compat from the stored spec ("" when none)."""
    app = spec.get("app")
    value = app.get("compat") if isinstance(app, dict) else None
    return value if isinstance(value, str) else ""


def job_from_pb(msg: pb.JobInfo) -> t.JobInfo:
    return t.JobInfo(
        id=msg.id, name=msg.name, status=JobStatus.parse(msg.status), submitter=msg.submitter,
        submitter_org=msg.submitter_org, submitted_at=msg.submitted_at, started_at=msg.started_at,
        ended_at=msg.ended_at, round=msg.round, rounds=msg.rounds, workflow=msg.workflow, min_sites=msg.min_sites,
        sites=[t.JobSite(s.name, SiteState.parse(s.state), s.round, s.error) for s in msg.sites],
        wait_reason=msg.wait_reason, error=msg.error, last_metrics=json.loads(msg.last_metrics_json or "{}"),
        artifacts=msg.artifacts, reports={name: _json_or_text(text) for name, text in msg.reports_json.items()},
        compat=msg.compat)


def _json_or_text(text: str) -> Any:
    """A report's JSON, or its text when it is not JSON (shown as it is rather than failing the command)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def site_to_pb(site: SiteRow, online: bool, isolation: str = "", resources: SiteLoad | None = None) -> pb.SiteInfo:
    return pb.SiteInfo(name=site.name, org=site.org, online=online, last_heartbeat=site.last_heartbeat,
                       running_jobs=site.running_jobs, not_after=site.not_after, isolation=isolation,
                       resources=load_to_pb(resources) if resources is not None else None)


def site_from_pb(msg: pb.SiteInfo) -> t.SiteInfo:
    try:
        resources = reported(msg)
    except ResourcesRefused:  # a server passes on only what it accepted; shown as not reported otherwise
        resources = None
    return t.SiteInfo(msg.name, msg.org, msg.online, msg.last_heartbeat, list(msg.running_jobs), msg.not_after,
                      msg.isolation, msg.parent, resources)


def certificate_to_pb(cert: KnownCertificate) -> pb.CertificateInfo:
    return pb.CertificateInfo(name=cert.name, kind=cert.kind, org=cert.org, role=cert.role, not_after=cert.not_after,
                              last_seen=cert.last_seen)


def certificate_from_pb(msg: pb.CertificateInfo) -> t.CertificateInfo:
    return t.CertificateInfo(msg.name, msg.kind, msg.org, msg.role, msg.not_after, msg.last_seen)


def event_to_pb(event: EventRow) -> pb.Event:
    return pb.Event(seq=event.seq, job_id=event.job_id, time=event.time, kind=event.kind, message=event.message,
                    data_json=json.dumps(event.data))


def event_from_pb(msg: pb.Event) -> t.Event:
    return t.Event(msg.seq, msg.job_id, msg.time, msg.kind, msg.message, json.loads(msg.data_json or "{}"))


def identity_from_pb(msg: pb.Identity) -> t.Identity:
    return t.Identity(msg.name, msg.org, msg.kind, msg.role, msg.project, msg.not_after, tuple(msg.notices))


def metric_to_pb(site: str, round_no: int, name: str, value: float, step: int | None) -> pb.MetricValue:
    return pb.MetricValue(site=site, round=round_no, name=name, value=value, step=step or 0, has_step=step is not None)


def metric_from_pb(msg: pb.MetricValue) -> t.MetricValue:
    return t.MetricValue(msg.site, msg.round, msg.name, msg.value, msg.step if msg.has_step else None)


def log_from_pb(msg: pb.LogEntry) -> t.LogEntry:
    return t.LogEntry(msg.site, msg.time, msg.line)


def meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, default=str)
