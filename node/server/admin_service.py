"""The Admin service: what `flctl` (CLI and TUI) calls. Thin: identity, authorization, audit, route.

Every call is authorized from the caller's certificate (role, org) against the server's
policy (`local/policy.yml` of the server kit) and written to the audit log with its result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from flctl.node.admin.admin_types import DOWNLOAD_SIZE_HEADER
from flctl.node.jobs.job_status import ENDED, JobStatus, ends_job
from flctl.node.security.authz import Actor, JobOwner, Right, decide
from flctl.node.server.certificates import AdminSightings, known_certificates, own_certificate
from flctl.node.server.context import ServerContext
from flctl.node.server.disk_guard import is_disk_full
from flctl.node.server.federation_service import stream_file
from flctl.node.server.identity import caller
from flctl.node.server.job_records import log_files, metrics_json, reports_json
from flctl.node.server.store import JobRow
from flctl.node.wire import serde
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from flctl.node.jobs.job_spec import LoadedJob

log = logging.getLogger("flctl.server")
FOLLOW_WAIT_S = 1.0
METRIC_BATCH = 2000  # metric values a JobMetrics message carries (a few hundred KB at most)
SIGNATURE_FILE = "signature.json"


def _exported_files(job_dir: Path) -> list[Path]:
    """The files the job's metrics exporters wrote that its download carries: `tb/` (TensorBoard event files, one
    folder a site) and `wandb/offline-run-*/` (for `wandb sync`); links are left out."""
    found = [*(job_dir / "tb").rglob("*"), *(job_dir / "wandb").glob("offline-run-*/**/*")]
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


class AdminService(pb_grpc.AdminServicer):
    def __init__(self, ctx: ServerContext, poke: Any) -> None:
        self._ctx = ctx
        self._poke = poke
        self._sightings = AdminSightings(ctx.store)

    # ------------------------------------------------------------------ identity, rights, audit
    def _actor(self, context: Any) -> tuple[Actor, float]:
        who, cert = caller(context, "admin", self._ctx.revocations)
        not_after = cert.not_valid_after_utc.timestamp()
        try:  # what `flctl certs` lists for admins; a failed write must not fail the call
            self._sightings.saw(who.name, who.org, who.role or "", not_after)
        except Exception:
            log.exception("could not record the certificate of admin %s", who.name)
        return Actor(who.name, who.org, who.role or ""), not_after

    def _audit(self, actor: Actor, action: str, args: dict[str, Any], result: str) -> None:
        """Record the call. A write that fails (beyond a full disk, which `disk.call` handles) is logged and the
        call answers as it would have: a refusal stays a refusal with its own status, a done thing stays done."""
        try:
            self._ctx.disk.call(lambda: self._ctx.audit.append(actor.name, action, org=actor.org, role=actor.role,
                                                               args=args, result=result))
        except Exception:
            log.exception("could not write %s by %s (%s) to the audit log %s", action, actor.name, result,
                          self._ctx.audit.path)

    def _refuse(self, context: Any, actor: Actor, action: str, args: dict[str, Any], code: grpc.StatusCode,
                message: str) -> NoReturn:
        self._audit(actor, action, args, f"refused: {message}")
        context.abort(code, message)
        raise AssertionError("unreachable")  # context.abort raises

    def _authorize(self, context: Any, actor: Actor, action: str, args: dict[str, Any], right: Right,
                   job: JobRow | None = None) -> None:
        owner = JobOwner(job.submitter, job.submitter_org) if job else None
        reason = decide(self._ctx.policy.current(), actor, right, owner)
        if reason is not None:
            self._refuse(context, actor, action, args, grpc.StatusCode.PERMISSION_DENIED, f"not permitted: {reason}")

    def _may_view(self, actor: Actor, job: JobRow) -> bool:
        return decide(self._ctx.policy.current(), actor, "view", JobOwner(job.submitter, job.submitter_org)) is None

    def _job(self, context: Any, actor: Actor, action: str, job_id: str, right: Right) -> JobRow:
        args = {"job_id": job_id}
        job = self._ctx.store.get_job(job_id)
        if job is None:
            self._refuse(context, actor, action, args, grpc.StatusCode.NOT_FOUND,
                         f"no job {job_id}; `flctl job ls` lists the jobs")
        self._authorize(context, actor, action, args, right, job)
        return job

    def _info(self, job: JobRow, with_reports: bool = False) -> pb.JobInfo:
        answered: dict[str, dict[str, float]] = {}
        logged: dict[str, dict[str, float]] = {}  # a round's metric that was logged already is stored once, as logged
        if job.round >= 0:
            for site, rnd, name, value, step in self._ctx.store.metrics(job.id):
                if rnd == job.round:
                    (answered if step is None else logged).setdefault(site, {})[name] = value
        last = {site: {**logged.get(site, {}), **answered.get(site, {})} for site in {*answered, *logged}}
        job_dir = self._ctx.jobs_dir() / job.id
        return serde.job_to_pb(job, last, str(job_dir), reports_json(job_dir) if with_reports else None)

    # ------------------------------------------------------------------ calls
    def WhoAmI(self, request: pb.Empty, context: Any) -> pb.Identity:
        actor, not_after = self._actor(context)
        return pb.Identity(name=actor.name, org=actor.org, kind="admin", role=actor.role, project=self._ctx.project,
                           not_after=not_after, notices=self._ctx.audit.notices())

    def SubmitJob(self, request_iterator: Iterator[pb.SubmitMessage], context: Any) -> pb.JobRef:
        from flctl.node.jobs.job_signing import SignatureRefused, verify_bundle

        actor, _ = self._actor(context)
        action, args = "job.submit", dict[str, Any]()
        self._authorize(context, actor, action, args, "submit_job")
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT,
                         "a submission starts with its header")
        head = first.header
        if head.size > self._ctx.max_bundle_bytes:
            self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT,
                         f"the job bundle is {head.size} bytes; the limit is {self._ctx.max_bundle_bytes}")
        data = bytearray()
        for message in request_iterator:
            data += message.chunk
            if len(data) > head.size:
                self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT,
                             "the bundle is larger than its header says")
        bundle = bytes(data)
        args = {"sha256": head.sha256, "size": len(bundle)}
        if hashlib.sha256(bundle).hexdigest() != head.sha256:
            self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT,
                         "the bundle arrived damaged (digest mismatch)")
        try:
            signer, claims = verify_bundle(bundle, head.signature, head.signer_cert_pem, self._ctx.kit.ca_pem,
                                           head.claims_json, self._ctx.revocations)
        except SignatureRefused as exc:
            self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT, f"job refused: {exc}")
        if (signer.name, signer.org) != (actor.name, actor.org):
            self._refuse(context, actor, action, args, grpc.StatusCode.PERMISSION_DENIED,
                         f"not permitted: the job is signed by {signer.name}, not by the caller {actor.name}")
        job_id = claims.job_id  # chosen and signed by the client: sites run the bundle under this id only
        args = {**args, "job_id": job_id}
        if self._ctx.store.get_job(job_id) is not None or (self._ctx.jobs_dir() / job_id).exists():
            self._refuse(context, actor, action, args, grpc.StatusCode.ALREADY_EXISTS,
                         f"job {job_id} exists already (a signed job is submitted once); submit the folder again")
        job_dir = self._ctx.jobs_dir() / job_id
        loaded = self._store_bundle(context, actor, args, bundle, head, job_dir)
        spec = loaded.spec
        sites: list[str] | str = "all" if spec.sites == "all" else list(spec.sites)
        signed_sites = claims.sites if isinstance(claims.sites, str) else sorted(claims.sites)
        if (claims.name, signed_sites) != (spec.name, sites if isinstance(sites, str) else sorted(sites)):
            shutil.rmtree(job_dir, ignore_errors=True)
            self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT,
                         f"job refused: it was signed as '{claims.name}' for {claims.shown_sites()}, but its job.yml "
                         f"names '{spec.name}' for {'all sites' if sites == 'all' else ', '.join(sites)}")
        relayed = self._relay_refusal(sites, spec.workflow.type, spec.workflow.args)
        if relayed:
            shutil.rmtree(job_dir, ignore_errors=True)
            self._refuse(context, actor, action, args, grpc.StatusCode.INVALID_ARGUMENT, f"job refused: {relayed}")
        rounds = int(getattr(loaded.args, "rounds", 0))
        row = JobRow(job_id, spec.name, JobStatus.SUBMITTED, actor.name, actor.org, actor.role, time.time(), 0.0,
                     0.0, -1, rounds, spec.workflow.type, spec.min_sites, sites, "", "", head.sha256,
                     spec.model_dump(mode="json"))
        try:
            self._ctx.store.add_job(row, ("submitted", f"submitted by {actor.name} ({actor.org})",
                                          {"submitter": actor.name, "name": spec.name}))
        except Exception as exc:  # nothing of the job is kept: it is either stored and said so, or not at all
            log.exception("could not store job %s", job_id)
            shutil.rmtree(job_dir, ignore_errors=True)
            self._refuse(context, actor, action, args, grpc.StatusCode.INTERNAL,
                         f"the server could not store the job ({type(exc).__name__}: {exc}); nothing of it was "
                         "kept: submit it again, and see the server's log if this repeats")
        self._audit(actor, action, {**args, "job_id": job_id, "name": spec.name}, "ok")
        self._poke()
        return pb.JobRef(job_id=job_id)

    def _store_bundle(self, context: Any, actor: Actor, args: dict[str, Any], bundle: bytes, head: pb.SubmitHeader,
                      job_dir: Path) -> LoadedJob:
        """Check the job in the bundle and keep the bundle, its signature and job.yml in `job_dir`."""
        from flctl.node.errors import JobError
        from flctl.node.jobs.bundle import extract_bundle
        from flctl.node.jobs.job_spec import load_job

        try:
            with tempfile.TemporaryDirectory(dir=self._ctx.workspace) as tmp:
                try:
                    extract_bundle(bundle, Path(tmp) / "job")
                    loaded = load_job(Path(tmp) / "job", shown="submitted job")
                except JobError as exc:
                    self._refuse(context, actor, "job.submit", args, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                job_dir.mkdir(parents=True)
                (job_dir / "bundle.zip").write_bytes(bundle)
                (job_dir / SIGNATURE_FILE).write_text(json.dumps({
                    "signer_cert_pem": head.signer_cert_pem.decode(), "signature": head.signature.hex(),
                    "claims_json": head.claims_json}))
                shutil.copy(Path(tmp) / "job" / "job.yml", job_dir / "job.yml")
        except OSError as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            if not is_disk_full(exc):
                raise
            self._ctx.disk.release()
            self._refuse(context, actor, "job.submit", args, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         "the server's disk is full; free space in its workspace, then submit the job again")
        self._model_from_job(context, actor, args, loaded.spec.initial_model, job_dir)
        return loaded

    def _model_from_job(self, context: Any, actor: Actor, args: dict[str, Any], value: str | None,
                        job_dir: Path) -> None:
        """job.yml's `initial_model: job:<ID>`: refused unless job ID is here, the submitter may download it (as
        `flctl job download`) and it has a final model, which is then kept in `job_dir` (`initial_model`)."""
        from flctl.node.jobs.initial_model import FinishedJob, parse, resolve_finished_job

        ref = parse(value) if value else None
        if not isinstance(ref, FinishedJob):
            return
        source = self._ctx.store.get_job(ref.job_id)
        reason = "" if source is None else decide(self._ctx.policy.current(), actor, "download_job",
                                                  JobOwner(source.submitter, source.submitter_org))
        if source is None or reason:
            shutil.rmtree(job_dir, ignore_errors=True)
            code, why = ((grpc.StatusCode.INVALID_ARGUMENT, f"no job {ref.job_id} on this server; `flctl job ls` "
                          "lists the jobs") if source is None else
                         (grpc.StatusCode.PERMISSION_DENIED, f"not permitted to use job {ref.job_id}'s model: "
                          f"{reason}"))
            self._refuse(context, actor, "job.submit", args, code, f"job refused: initial_model: {why}")
        try:
            resolve_finished_job(value or "", self._ctx.jobs_dir(), job_dir)
        except (ValueError, OSError) as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            self._refuse(context, actor, "job.submit", args, grpc.StatusCode.INVALID_ARGUMENT,
                         f"job refused: initial_model: {exc}")

    def ListJobs(self, request: pb.Empty, context: Any) -> pb.JobList:
        actor, _ = self._actor(context)
        self._authorize(context, actor, "job.list", {}, "view")
        jobs = [self._info(j) for j in self._ctx.store.list_jobs() if self._may_view(actor, j)]
        return pb.JobList(jobs=jobs)

    def GetJob(self, request: pb.JobRef, context: Any) -> pb.JobInfo:
        actor, _ = self._actor(context)
        return self._info(self._job(context, actor, "job.show", request.job_id, "view"), with_reports=True)

    def AbortJob(self, request: pb.JobRef, context: Any) -> pb.JobInfo:
        actor, _ = self._actor(context)
        action, args = "job.abort", {"job_id": request.job_id}
        job = self._job(context, actor, action, request.job_id, "manage_job")
        reason = f"aborted by {actor.name}"
        if job.status == JobStatus.SUBMITTED:
            self._ctx.store.update_job(job.id, status=JobStatus.ABORTED, ended_at=time.time(), error=reason)
            self._ctx.store.add_event(job.id, JobStatus.ABORTED.event_kind, f"job aborted: {reason}",
                                      {"status": JobStatus.ABORTED})
        elif job.status == JobStatus.RUNNING:
            self._ctx.store.add_event(job.id, "aborting", reason, {})
            self._ctx.runner.abort(job.id, reason)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._status(job.id) == JobStatus.RUNNING:
                self._ctx.store.wait_for_change(0.2)
        else:
            self._refuse(context, actor, action, args, grpc.StatusCode.FAILED_PRECONDITION,
                         f"job {job.id} already ended ({job.status})")
        self._audit(actor, action, args, "ok")
        final = self._ctx.store.get_job(job.id)
        assert final is not None
        return self._info(final)

    def DeleteJob(self, request: pb.JobRef, context: Any) -> pb.Ack:
        """Remove an ended job's folder and records: the rights to manage and to download it are both needed."""
        from flctl.node.server.retention import remove_job

        actor, _ = self._actor(context)
        action, args = "job.rm", {"job_id": request.job_id}
        job = self._job(context, actor, action, request.job_id, "manage_job")
        self._authorize(context, actor, action, args, "download_job", job)
        if job.status not in ENDED:
            self._refuse(context, actor, action, args, grpc.StatusCode.FAILED_PRECONDITION,
                         f"job {job.id} is {job.status}; abort it first (`flctl job abort {job.id}`), then remove it")
        try:
            remove_job(self._ctx, job.id)
        except OSError as exc:
            self._refuse(context, actor, action, args, grpc.StatusCode.INTERNAL,
                         f"could not remove job {job.id}'s folder: {exc}")
        self._audit(actor, action, args, "ok")
        return pb.Ack(message=f"removed job {job.id}")

    def _status(self, job_id: str) -> JobStatus | None:
        job = self._ctx.store.get_job(job_id)
        return job.status if job else None

    def DownloadJob(self, request: pb.JobRef, context: Any) -> Iterator[pb.Chunk]:
        actor, _ = self._actor(context)
        job = self._job(context, actor, "job.download", request.job_id, "download_job")
        self._audit(actor, "job.download", {"job_id": job.id}, "ok")
        job_dir = self._ctx.jobs_dir() / job.id
        with tempfile.TemporaryDirectory(dir=self._ctx.workspace) as tmp:
            archive = Path(tmp) / "artifacts.zip"
            self._pack(job, job_dir, archive)
            context.send_initial_metadata(((DOWNLOAD_SIZE_HEADER, str(archive.stat().st_size)),))
            for block in stream_file(archive):
                yield pb.Chunk(data=block)

    def _pack(self, job: JobRow, job_dir: Path, archive: Path) -> None:
        store = self._ctx.store
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("job.json", json.dumps(serde.job_from_pb(self._info(job)).to_json(), indent=2))
            if (job_dir / "job.yml").is_file():
                zf.write(job_dir / "job.yml", "job.yml")
            for model in sorted((job_dir / "models").glob("*.safetensors")):
                zf.write(model, f"models/{model.name}", compress_type=zipfile.ZIP_STORED)
            zf.writestr("metrics.json", metrics_json(store, job.id))
            for report in sorted((job_dir / "reports").glob("*.json")):
                zf.write(report, f"reports/{report.name}")
            for name, text in log_files(store, job.id).items():
                zf.writestr(f"logs/{name}", text)
            zf.writestr("events.json", json.dumps([e.__dict__ for e in store.events(0, job.id)], indent=1))
            for exported in _exported_files(job_dir):  # TensorBoard runs, offline W&B runs (metrics_export)
                zf.write(exported, str(exported.relative_to(job_dir)))

    def JobLogs(self, request: pb.LogsRequest, context: Any) -> Iterator[pb.LogEntry]:
        actor, _ = self._actor(context)
        # a script's output may hold what it computed on a site's data: shown to those who may download the job
        self._job(context, actor, "job.logs", request.job_id, "download_job")
        after = 0
        while context.is_active():
            rows = self._ctx.store.logs(request.job_id, request.site, after)
            for row_id, site, when, line in rows:
                after = row_id
                yield pb.LogEntry(site=site, time=when, line=line)
            if not request.follow:
                return
            if not rows and self._status(request.job_id) in ENDED:
                return
            if not rows:
                self._ctx.store.wait_for_change(FOLLOW_WAIT_S)

    def JobMetrics(self, request: pb.JobRef, context: Any) -> Iterator[pb.MetricBatch]:
        actor, _ = self._actor(context)
        self._job(context, actor, "job.metrics", request.job_id, "view")  # as job show's last metrics
        rows = self._ctx.store.metrics(request.job_id)
        for start in range(0, len(rows), METRIC_BATCH):
            yield pb.MetricBatch(values=[serde.metric_to_pb(*row) for row in rows[start:start + METRIC_BATCH]])

    def _relay_refusal(self, sites: list[str] | str, workflow: str, args: dict[str, Any]) -> str:
        """Why a job of `workflow` cannot reach `sites` through the project's relays ('' when it can, or when none
        of its sites is under a relay)."""
        from flctl.node.relay.combine import refusal_for

        parents = self._ctx.parents
        relayed = sorted(parents) if sites == "all" else [s for s in sites if s in parents]
        if not relayed:
            return ""
        why = refusal_for(workflow, args)
        return f"{relayed[0]} is reached through a relay, and {why}" if why else ""

    def ListSites(self, request: pb.Empty, context: Any) -> pb.SiteList:
        actor, _ = self._actor(context)
        self._authorize(context, actor, "site.list", {}, "view")
        now = time.time()
        sites = [serde.site_to_pb(s, self._ctx.online(s, now), self._ctx.isolation.get(s.name, ""),
                                  self._ctx.resources.get(s.name))
                 for s in self._ctx.store.sites()]
        below: list[pb.SiteInfo] = []
        for relay in sites:  # below each relay: what it said last, offline once the relay itself is silent
            for child in self._ctx.relayed.get(relay.name, []):
                shown = pb.SiteInfo()
                shown.CopyFrom(child)
                shown.online = shown.online and relay.online
                below.append(shown)
        # A site under a relay that connected to the server meanwhile (failover: server) is listed once: where it
        # is online now (under its relay when both or neither say so).
        online_below = {s.name for s in below if s.online}
        direct_online = {s.name for s in sites if s.online}
        sites = [s for s in sites if s.name not in {b.name for b in below} or
                 (s.online and s.name not in online_below)]
        below = [b for b in below if b.online or b.name not in direct_online]
        return pb.SiteList(sites=sites + below)

    def ListCertificates(self, request: pb.Empty, context: Any) -> pb.CertificateList:
        actor, _ = self._actor(context)
        self._authorize(context, actor, "cert.list", {}, "view")
        known = known_certificates(self._ctx.store, own_certificate(self._ctx.kit.info))
        return pb.CertificateList(certificates=[serde.certificate_to_pb(c) for c in known])

    def WatchEvents(self, request: pb.WatchRequest, context: Any) -> Iterator[pb.Event]:
        actor, _ = self._actor(context)
        if request.job_id:
            self._job(context, actor, "job.watch", request.job_id, "view")
        else:
            self._authorize(context, actor, "job.watch", {}, "view")
        after = request.after_seq
        visible: dict[str, bool] = {}
        while context.is_active():
            events = self._ctx.store.events(after, request.job_id)
            for event in events:
                after = event.seq
                if event.job_id not in visible:
                    job = self._ctx.store.get_job(event.job_id)
                    visible[event.job_id] = job is not None and self._may_view(actor, job)
                if not visible[event.job_id]:
                    continue
                yield serde.event_to_pb(event)
                if request.job_id and ends_job(event.kind):
                    return
            if not events:
                self._ctx.store.wait_for_change(FOLLOW_WAIT_S)

    def PublishCrl(self, request: pb.CrlRequest, context: Any) -> pb.Ack:
        from flctl.node.security.revocation import CrlRefused

        actor, _ = self._actor(context)
        action = "crl.publish"
        if actor.role != "project_admin":
            self._refuse(context, actor, action, {}, grpc.StatusCode.PERMISSION_DENIED,
                         "not permitted: only a project_admin may publish a CRL")
        try:
            number = self._ctx.revocations.install(request.crl_pem)
        except CrlRefused as exc:
            self._refuse(context, actor, action, {}, grpc.StatusCode.INVALID_ARGUMENT, f"CRL refused: {exc}")
        self._audit(actor, action, {"crl_number": number}, "ok")
        self._ctx.hub.recheck()  # a revoked site's command stream ends now
        return pb.Ack(message=f"CRL {number} installed")
