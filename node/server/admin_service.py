"""The Admin service: what `flctl` (CLI and TUI) calls. Thin: checks identity, validates, routes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from node import serde
from node.admin_types import ENDED_STATUSES
from node.proto import flctl_pb2 as pb
from node.proto import flctl_pb2_grpc as pb_grpc
from node.server.context import ServerContext
from node.server.federation_service import stream_file
from node.server.job_records import log_files, metrics_json
from node.store import JobRow
from node.tls import peer_identity
from provisioner.pki import CertIdentity

FOLLOW_WAIT_S = 1.0


def _admin(context: Any) -> tuple[CertIdentity, float]:
    found = peer_identity(context)
    if found is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid flctl certificate")
    who, cert = found  # type: ignore[misc]
    if who.kind != "admin":
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"the Admin service is for admins; '{who.name}' holds a {who.kind} certificate")
    return who, cert.not_valid_after_utc.timestamp()


class AdminService(pb_grpc.AdminServicer):
    def __init__(self, ctx: ServerContext, poke: Any) -> None:
        self._ctx = ctx
        self._poke = poke

    def _job(self, job_id: str, context: Any) -> JobRow:
        job = self._ctx.store.get_job(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id}; `flctl job ls` lists the jobs")
        return job  # type: ignore[return-value]

    def _info(self, job: JobRow) -> pb.JobInfo:
        last: dict[str, dict[str, float]] = {}
        if job.round >= 0:
            for site, rnd, name, value, _step in self._ctx.store.metrics(job.id):
                if rnd == job.round or (job.status == "FINISHED" and rnd == job.rounds - 1):
                    last.setdefault(site, {})[name] = value
        return serde.job_to_pb(job, last, str(self._ctx.jobs_dir() / job.id))

    def WhoAmI(self, request: pb.Empty, context: Any) -> pb.Identity:
        who, not_after = _admin(context)
        return pb.Identity(name=who.name, org=who.org, kind=who.kind, role=who.role or "", project=self._ctx.project,
                           not_after=not_after)

    def SubmitJob(self, request_iterator: Iterator[pb.SubmitMessage], context: Any) -> pb.JobRef:
        from node.bundle import extract_bundle
        from node.errors import JobError
        from node.job_spec import load_job

        who, _ = _admin(context)
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a submission starts with its header")
        head = first.header  # type: ignore[union-attr]
        if head.size > self._ctx.max_bundle_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the job bundle is {head.size} bytes; the limit is {self._ctx.max_bundle_bytes}")
        data = bytearray()
        for message in request_iterator:
            data += message.chunk
            if len(data) > head.size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the bundle is larger than its header says")
        if hashlib.sha256(data).hexdigest() != head.sha256:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the bundle arrived damaged (digest mismatch)")
        job_id = uuid.uuid4().hex[:12]
        job_dir = self._ctx.jobs_dir() / job_id
        with tempfile.TemporaryDirectory(dir=self._ctx.workspace) as tmp:
            try:
                extract_bundle(bytes(data), Path(tmp) / "job")
                loaded = load_job(Path(tmp) / "job", shown="submitted job")
            except JobError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            job_dir.mkdir(parents=True)
            (job_dir / "bundle.zip").write_bytes(bytes(data))
            shutil.copy(Path(tmp) / "job" / "job.yml", job_dir / "job.yml")
        spec = loaded.spec
        sites: list[str] | str = "all" if spec.sites == "all" else list(spec.sites)
        rounds = int(getattr(loaded.args, "rounds", 0))
        row = JobRow(job_id, spec.name, "SUBMITTED", who.name, who.org, who.role or "", time.time(), 0.0, 0.0, -1,
                     rounds, spec.workflow.type, spec.min_sites, sites, "", "", head.sha256,
                     spec.model_dump(mode="json"))
        self._ctx.store.add_job(row)
        self._ctx.store.add_event(job_id, "submitted", f"submitted by {who.name} ({who.org})",
                                  {"submitter": who.name, "name": spec.name})
        self._poke()
        return pb.JobRef(job_id=job_id)

    def ListJobs(self, request: pb.Empty, context: Any) -> pb.JobList:
        _admin(context)
        return pb.JobList(jobs=[self._info(j) for j in self._ctx.store.list_jobs()])

    def GetJob(self, request: pb.JobRef, context: Any) -> pb.JobInfo:
        _admin(context)
        return self._info(self._job(request.job_id, context))

    def AbortJob(self, request: pb.JobRef, context: Any) -> pb.JobInfo:
        who, _ = _admin(context)
        job = self._job(request.job_id, context)
        reason = f"aborted by {who.name}"
        if job.status == "SUBMITTED":
            self._ctx.store.update_job(job.id, status="ABORTED", ended_at=time.time(), error=reason)
            self._ctx.store.add_event(job.id, "aborted", f"job aborted: {reason}", {"status": "ABORTED"})
        elif job.status == "RUNNING":
            self._ctx.store.add_event(job.id, "aborting", reason, {})
            self._ctx.runner.abort(job.id, reason)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._job(job.id, context).status == "RUNNING":
                self._ctx.store.wait_for_change(0.2)
        else:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id} already ended ({job.status})")
        return self._info(self._job(job.id, context))

    def DownloadJob(self, request: pb.JobRef, context: Any) -> Iterator[pb.Chunk]:
        _admin(context)
        job = self._job(request.job_id, context)
        job_dir = self._ctx.jobs_dir() / job.id
        with tempfile.TemporaryDirectory(dir=self._ctx.workspace) as tmp:
            archive = Path(tmp) / "artifacts.zip"
            self._pack(job, job_dir, archive)
            for block in stream_file(archive):
                yield pb.Chunk(data=block)

    def _pack(self, job: JobRow, job_dir: Path, archive: Path) -> None:
        store = self._ctx.store
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            info = self._info(job)
            zf.writestr("job.json", json.dumps(serde.job_from_pb(info).to_json(), indent=2))
            if (job_dir / "job.yml").is_file():
                zf.write(job_dir / "job.yml", "job.yml")
            for model in sorted((job_dir / "models").glob("*.safetensors")):
                zf.write(model, f"models/{model.name}", compress_type=zipfile.ZIP_STORED)
            zf.writestr("metrics.json", metrics_json(store, job.id))
            for name, text in log_files(store, job.id).items():
                zf.writestr(f"logs/{name}", text)
            zf.writestr("events.json", json.dumps([e.__dict__ for e in store.events(0, job.id)], indent=1))

    def JobLogs(self, request: pb.LogsRequest, context: Any) -> Iterator[pb.LogEntry]:
        _admin(context)
        self._job(request.job_id, context)
        after = 0
        while context.is_active():
            rows = self._ctx.store.logs(request.job_id, request.site, after)
            for row_id, site, when, line in rows:
                after = row_id
                yield pb.LogEntry(site=site, time=when, line=line)
            if not request.follow:
                return
            job = self._ctx.store.get_job(request.job_id)
            if not rows and job is not None and job.status in ENDED_STATUSES:
                return
            if not rows:
                self._ctx.store.wait_for_change(FOLLOW_WAIT_S)

    def ListSites(self, request: pb.Empty, context: Any) -> pb.SiteList:
        _admin(context)
        now = time.time()
        return pb.SiteList(sites=[serde.site_to_pb(s, self._ctx.online(s, now)) for s in self._ctx.store.sites()])

    def WatchEvents(self, request: pb.WatchRequest, context: Any) -> Iterator[pb.Event]:
        _admin(context)
        if request.job_id:
            self._job(request.job_id, context)
        after = request.after_seq
        while context.is_active():
            events = self._ctx.store.events(after, request.job_id)
            for event in events:
                after = event.seq
                yield serde.event_to_pb(event)
                if request.job_id and event.kind in ("finished", "failed", "aborted"):
                    return
            if not events:
                self._ctx.store.wait_for_change(FOLLOW_WAIT_S)
