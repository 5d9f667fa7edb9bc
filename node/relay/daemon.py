"""The relay daemon: a server to its sites (`service.RelayService`), a site to its parent (the loop here).

Upward it does what a site daemon does (register, heartbeat with the tree below it, follow commands); for each job
its parent starts on it, it checks the job as a site would (the admin's signature, the sites it targets), starts it
on its own sites that the job targets, then serves the job (`RelayJob`): every task from its parent is posted to
those sites, and their answers go up as one (`combine`). It runs no job script itself and keeps no model on disk:
a task and the running sum of its answers are in memory while the round lasts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from flctl.node.config.kit import NodeKit
from flctl.node.config.local_files import node_config, policy_and_revocations
from flctl.node.config.resources import load_resources, resources_path
from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.jobs.tasks import TaskResult
from flctl.node.process import pidfile
from flctl.node.process.backoff import Backoff
from flctl.node.relay.combine import combine, refusal_for
from flctl.node.relay.service import RelayService
from flctl.node.security.audit import AuditLog
from flctl.node.security.path_names import BadName, check_path_name
from flctl.node.security.revocation import CrlRefused
from flctl.node.security.tls import CHUNK, channel, server_credentials, server_options
from flctl.node.server.federation_service import add_to_server
from flctl.node.server.site_hub import SiteHub
from flctl.node.server.task_board import PostedTask, TaskBoard
from flctl.node.wire import chunk_codec
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.provisioner.pki import CertIdentity
from flctl.provisioner.relay_tree import child_toward

log = logging.getLogger("flctl.relay")
VERSION = "1"
ISOLATION = "relay (runs no job scripts)"
REFUSAL_THREADS = 96
RETRY_FOR_S = 120.0
"""How long a job at this relay waits for its parent to answer again (a site's job process waits as long)."""


@dataclass
class Child:
    """A site or lower relay that connects to this relay, as last heard."""

    name: str
    org: str
    not_after: float
    last_seen: float
    running_jobs: list[str]
    isolation: str = ""
    below: list[pb.SiteInfo] | None = None  # a lower relay's own tree
    resources: pb.SiteResources | None = None  # what a site reported of its resources (flctl site ls shows it)


class RelayJob:
    """One job at this relay: its bundle, the sites it runs on here, and the answers of the task in progress."""

    def __init__(self, start: pb.StartJob, bundle: bytes, sites: list[str]) -> None:
        self.start = start
        self.bundle = bundle
        self.sites = sites
        self.failed: dict[str, str] = {}
        self._answers: queue.Queue[tuple[str, str, TaskResult | str]] = queue.Queue()
        self.stopped = threading.Event()

    def answered(self, site: str, task_id: str, answer: TaskResult | str) -> None:
        """A site's answer to `task_id` (a TaskResult), or why it failed it (a str)."""
        self._answers.put((site, task_id, answer))

    def site_failed(self, site: str, error: str) -> None:
        """A site's job process failed: it answers no task of this job any more."""
        self.failed[site] = error
        self._answers.put((site, "", error))

    def gather(self, task_id: str, sites: list[str], timeout_s: float) -> tuple[list[TaskResult], dict[str, str]]:
        """The answers of `sites` to `task_id` until all came, failed, or `timeout_s` passed (or the job stopped)."""
        waiting = set(sites) - set(self.failed)
        answers: list[TaskResult] = []
        failures = {site: self.failed[site] for site in sites if site in self.failed}
        deadline = time.monotonic() + (timeout_s if timeout_s > 0 else 86400.0)
        while waiting and not self.stopped.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                site, answered, what = self._answers.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if site not in waiting or (answered and answered != task_id):
                continue
            waiting.discard(site)
            if isinstance(what, TaskResult):
                answers.append(what)
            else:
                failures[site] = what
        for site in waiting:
            failures[site] = "did not answer in time"
        return answers, failures


class Relay:
    def __init__(self, kit: NodeKit, workspace: Path) -> None:
        config = node_config(kit, "relay", workspace)
        self.kit = kit
        self.workspace = workspace
        self.name = kit.info.name
        self.heartbeat_s = config.heartbeat.interval_s
        self.heartbeat_timeout_s = config.heartbeat.timeout_s
        self.parents = dict(config.parents or {})
        self.audit = AuditLog(workspace / "audit.jsonl", key_pem=kit.key_pem, actor=self.name)
        self.policy, self.revocations = policy_and_revocations(
            kit, workspace, lambda origin, why: self.audit.append(self.name, "crl.refused", file=origin, reason=why))
        resources = load_resources(resources_path(kit.root))
        self.window = resources.stream_window_bytes
        self.max_model_bytes = 64 * 1024 * 1024 * 1024
        self.board = TaskBoard()
        self.hub = SiteHub()
        self.jobs: dict[str, RelayJob] = {}
        self._children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call: Any = None
        self._stub: pb_grpc.FederationStub | None = None
        self._chan: grpc.Channel | None = None
        self.connected = threading.Event()
        listen = config.listen or config.server
        self.address = f"{listen.host}:{listen.port}"
        workers = resources.max_calls + REFUSAL_THREADS
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                                   options=server_options(resources.stream_window_bytes),
                                   maximum_concurrent_rpcs=workers)
        add_to_server(RelayService(self), self._server)

    # ------------------------------------------------------------------ below: its sites
    def heard(self, who: CertIdentity, not_after: float, running_jobs: list[str], isolation: str | None,
              below: list[pb.SiteInfo] | None = None, resources: pb.SiteResources | None = None) -> None:
        with self._lock:
            child = self._children.get(who.name)
            if child is None:
                child = self._children[who.name] = Child(who.name, who.org, not_after, 0.0, [])
            child.not_after, child.last_seen, child.running_jobs = not_after, time.time(), running_jobs
            if isolation is not None:
                child.isolation = isolation
            if who.kind == "relay" and below is not None:
                child.below = below
            child.resources = resources

    def online(self) -> list[str]:
        now = time.time()
        with self._lock:
            return sorted(c.name for c in self._children.values() if now - c.last_seen <= self.heartbeat_timeout_s)

    def tree(self) -> list[pb.SiteInfo]:
        """Every site and relay below this relay, each with its parent (what its heartbeat carries up)."""
        now = time.time()
        out: list[pb.SiteInfo] = []
        with self._lock:
            children = list(self._children.values())
        for child in sorted(children, key=lambda c: c.name):
            online = now - child.last_seen <= self.heartbeat_timeout_s
            out.append(pb.SiteInfo(name=child.name, org=child.org, online=online, last_heartbeat=child.last_seen,
                                   running_jobs=child.running_jobs, not_after=child.not_after,
                                   isolation=child.isolation, parent=self.name, resources=child.resources))
            for info in child.below or []:
                shown = pb.SiteInfo()
                shown.CopyFrom(info)
                shown.online = shown.online and online
                out.append(shown)
        return out

    def running_jobs(self) -> list[str]:
        with self._lock:
            return [job_id for job_id, job in self.jobs.items() if not job.stopped.is_set()]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        port = self._server.add_secure_port(self.address, server_credentials(self.kit))
        if port == 0:
            raise OSError(f"relay {self.name} cannot listen on {self.address}")
        self._server.start()
        log.info("relay %s listening on %s for its sites", self.name, self.address)

    def run(self) -> None:
        """Serve its sites and follow its parent until `stop()`; reconnect upward with backoff and jitter."""
        pidfile.write(self.workspace)
        backoff = Backoff()
        try:
            while not self._stop.is_set():
                try:
                    self._session(backoff)
                    delay = backoff.next_delay()
                except grpc.RpcError as exc:
                    if self._stop.is_set():
                        break
                    delay = backoff.next_delay()
                    log.warning("parent %s unreachable (%s); retrying in %.1f s", self.kit.target, _short(exc), delay)
                self.connected.clear()
                self._stop.wait(delay)
        finally:
            for job_id in self.running_jobs():
                self._end_job(job_id, JobStatus.ABORTED, "the relay is stopping")
            self._server.stop(0.5).wait()
            pidfile.remove(self.workspace)

    def stop(self) -> None:
        """End run(), from a signal handler at any point: the flag is set before `_call` is read and the session
        reads the flag after setting `_call`, so one of the two cancels the command stream."""
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def _session(self, backoff: Backoff) -> None:
        with channel(self.kit, self.window) as chan:
            stub = pb_grpc.FederationStub(chan)  # type: ignore[no-untyped-call]
            stub.Register(pb.RegisterRequest(version=VERSION, running_jobs=self.running_jobs(),
                                             isolation=ISOLATION), timeout=10)
            log.info("relay %s registered with %s", self.name, self.kit.target)
            backoff.reset()
            self._stub, self._chan = stub, chan
            self.connected.set()
            threading.Thread(target=self._heartbeats, args=(stub,), daemon=True).start()
            call = stub.Commands(pb.Empty())
            self._call = call
            if self._stop.is_set():  # stopped since registering, before there was a call to cancel (see stop())
                call.cancel()
            for command in call:
                if command.HasField("start"):
                    threading.Thread(target=self._start_job, args=(command.start,), daemon=True).start()
                elif command.HasField("stop"):
                    self._end_job(command.stop.job_id, JobStatus.ABORTED, command.stop.reason)
            if not self._stop.is_set():
                log.warning("the parent closed the command stream; reconnecting")

    def _heartbeats(self, stub: pb_grpc.FederationStub) -> None:
        while self.connected.is_set() and not self._stop.is_set():
            try:
                reply = stub.Heartbeat(pb.HeartbeatRequest(running_jobs=self.running_jobs(),
                                                           crl_number=self.revocations.number,
                                                           children=self.tree()), timeout=10)
                if reply.crl_pem:
                    try:
                        self.revocations.install(reply.crl_pem)
                    except CrlRefused as exc:
                        log.warning("refused the CRL the parent sent: %s", exc)
                for job_id in reply.stop_jobs:
                    self._end_job(job_id, JobStatus.ABORTED, "the parent no longer runs it")
            except grpc.RpcError as exc:
                log.debug("heartbeat failed: %s", _short(exc))
            self._stop.wait(self.heartbeat_s)

    # ------------------------------------------------------------------ jobs
    def report_up(self, job_id: str, logs: list[pb.LogLine], metrics: list[pb.Metric], status: str = "",
                  error: str = "") -> None:
        stub = self._stub
        if stub is None:
            return
        try:
            stub.Report(pb.ReportRequest(job_id=job_id, logs=logs, metrics=metrics, status=status, error=error),
                        timeout=10)
        except grpc.RpcError as exc:
            log.warning("could not report to the parent for job %s: %s", job_id, _short(exc))

    def _say(self, job_id: str, line: str, status: str = "", error: str = "") -> None:
        log.info("job %s: %s", job_id, line)
        self.report_up(job_id, [pb.LogLine(time=time.time(), line=f"[{self.name}] {line}")], [], status, error)

    def _start_job(self, start: pb.StartJob) -> None:
        job_id = start.job_id
        try:
            check_path_name(job_id, "job id the parent sent")
        except BadName as exc:
            self._say(job_id, f"refuses the job: {exc}", SiteState.FAILED, str(exc))
            return
        with self._lock:
            if job_id in self.jobs and not self.jobs[job_id].stopped.is_set():
                return
        stub = self._stub
        assert stub is not None
        try:
            bundle = b"".join(c.data for c in stub.FetchBundle(pb.JobRef(job_id=job_id), timeout=300))
        except grpc.RpcError as exc:
            self._say(job_id, f"could not fetch the job: {_short(exc)}", SiteState.FAILED, _short(exc))
            return
        sites, refusal = self._targets(bundle, start)
        if refusal:
            self.audit.append(self.name, "job.refuse", job_id=job_id, submitter=start.submitter, reason=refusal)
            self._say(job_id, f"refuses the job: {refusal}", SiteState.FAILED, f"{self.name} refuses the job: "
                                                                                 f"{refusal}")
            return
        job = RelayJob(start, bundle, sites)
        with self._lock:
            self.jobs[job_id] = job
        self.board.open_job(job_id, sites)
        for site in sites:
            self.hub.push(site, {"start": start})
        self.audit.append(self.name, "job.start", job_id=job_id, name=start.name, submitter=start.submitter,
                          sites=sites)
        self._say(job_id, f"started the job on {', '.join(sites)}", SiteState.RUNNING)
        threading.Thread(target=self._serve, args=(job,), daemon=True, name=f"job-{job_id}").start()

    def _targets(self, bundle: bytes, start: pb.StartJob) -> tuple[list[str], str]:
        """The online sites below this relay the job runs on, or why the relay refuses it."""
        from flctl.node.jobs.job_signing import SignatureRefused, verify_bundle

        if hashlib.sha256(bundle).hexdigest() != start.bundle_sha256:
            return [], "the job bundle arrived damaged (digest mismatch)"
        try:
            _, claims = verify_bundle(bundle, start.signature, start.signer_cert_pem, self.kit.ca_pem,
                                      start.claims_json, self.revocations)
        except SignatureRefused as exc:
            return [], str(exc)
        if claims.job_id != start.job_id or claims.name != start.name:
            return [], "the job's signature was made for another job"
        _, why = _workflow_of(bundle)
        if why:
            return [], why
        online = self.online()
        if claims.sites == "all":
            wanted = online
        else:
            below = {child_toward(self.parents, self.name, site) for site in claims.sites}
            wanted = sorted(c for c in below if c is not None)
            if not wanted:
                return [], f"it targets {claims.shown_sites()}, none of them below this relay"
            missing = [c for c in wanted if c not in online]
            if missing:
                return [], f"{', '.join(missing)} below this relay {'is' if len(missing) == 1 else 'are'} offline"
        if not wanted:
            return [], "none of its sites is online"
        return wanted, ""

    def _serve(self, job: RelayJob) -> None:
        """Pass the parent's tasks down and the combined answers up until the job ends."""
        job_id = job.start.job_id
        last = ""
        status = JobStatus.FINISHED
        heard = time.monotonic()
        try:
            while not job.stopped.is_set():
                chan = self._chan
                if chan is None or not self.connected.is_set():
                    time.sleep(0.5)
                    continue
                try:
                    header, payload = _fetch_task(chan, job_id, last)
                except grpc.RpcError as exc:  # the parent is away: its sites keep their job while it comes back
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or \
                            time.monotonic() - heard > RETRY_FOR_S:
                        raise
                    time.sleep(1.0)
                    continue
                heard = time.monotonic()
                if header.done:
                    status = JobStatus(header.status) if header.status else JobStatus.FINISHED
                    break
                if not header.task_id:
                    continue
                last = header.task_id
                self._relay_task(job, header, payload)
        except (grpc.RpcError, RuntimeError, ValueError) as exc:
            status = JobStatus.FAILED
            self._say(job_id, f"lost its parent: {exc}", SiteState.FAILED, str(exc))
        self._end_job(job_id, status, "the job ended")
        if status != JobStatus.FAILED:
            self._say(job_id, f"job ended ({status})", SiteState.FINISHED)

    def _relay_task(self, job: RelayJob, header: pb.TaskHeader, payload: bytes) -> None:
        job_id = job.start.job_id
        sites = [s for s in job.sites if s not in job.failed]
        task_id = uuid.uuid4().hex[:12]
        task = PostedTask(task_id=task_id, kind=header.kind, round=header.round, payload=Path(),
                          meta=json.loads(header.meta_json or "{}"), timeout_s=header.timeout_s, data=payload,
                          meta_json=header.meta_json or "{}")
        self.board.post(job_id, task, sites)
        timeout = header.timeout_s - 1.0 if header.timeout_s > 2 else header.timeout_s  # answer up in time
        answers, failures = job.gather(task_id, sites, timeout)
        self.board.cancel(job_id, task_id, sorted(failures))
        for site, why in sorted(failures.items()):
            self._say(job_id, f"round {header.round}: {site} gave no answer ({why})")
        if job.stopped.is_set():
            return
        try:
            combined = combine(answers)
        except ValueError as exc:
            self._submit_up(job_id, header.task_id, pb.ResultHeader(failed=True, error=f"{self.name}: {exc}"), b"")
            return
        from flctl.node.wire import tensors

        data = tensors.encode(combined.params)  # metrics only (an evaluate task): an empty model
        self._submit_up(job_id, header.task_id, pb.ResultHeader(
            num_examples=combined.num_examples, metrics=combined.metrics,
            meta_json=json.dumps(combined.meta, default=str), size=len(data)), data)

    def _submit_up(self, job_id: str, task_id: str, head: pb.ResultHeader, data: bytes) -> None:
        chan = self._chan
        if chan is None:
            return
        head.job_id, head.task_id = job_id, task_id
        view = memoryview(data)

        def messages() -> Any:
            yield pb.ResultMessage(header=head)
            for start in range(0, len(view), CHUNK):
                yield chunk_codec.encode(view[start:start + CHUNK])

        try:
            _calls(chan)[1](messages(), timeout=600)
        except grpc.RpcError as exc:
            log.warning("could not send job %s's result up: %s", job_id, _short(exc))

    def _end_job(self, job_id: str, status: JobStatus, reason: str) -> None:
        """The job is over here: its sites are told (their next poll says how it ended; aborted ones stop now)."""
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None or job.stopped.is_set():
            return
        job.stopped.set()
        job.bundle = b""  # its sites have it; the record stays for their last reports
        self.board.close_job(job_id, status)
        if status == JobStatus.ABORTED:
            for site in job.sites:
                self.hub.push(site, {"stop": {"job_id": job_id, "reason": status.lower()}})
        log.info("job %s ended at this relay (%s): %s", job_id, status, reason)


def _calls(chan: grpc.Channel) -> tuple[Any, Any]:
    """FetchTask and SubmitResult toward the parent, the model's chunks through `chunk_codec` (one stream each)."""
    service = "/" + pb.DESCRIPTOR.services_by_name["Federation"].full_name
    return (chan.unary_stream(f"{service}/FetchTask", request_serializer=pb.TaskRequest.SerializeToString,
                              response_deserializer=chunk_codec.decoder(pb.TaskMessage)),
            chan.stream_unary(f"{service}/SubmitResult", request_serializer=chunk_codec.serialize,
                              response_deserializer=pb.Ack.FromString))


def _fetch_task(chan: grpc.Channel, job_id: str, last: str) -> tuple[pb.TaskHeader, bytes]:
    """The parent's next task for this relay (a poll that ends empty-handed has no task id)."""
    header: pb.TaskHeader | None = None
    data = bytearray()
    for message in _calls(chan)[0](pb.TaskRequest(job_id=job_id, last_task_id=last), timeout=60):
        if message.HasField("header"):
            header = message.header
        else:
            data += message.chunk
    if header is None:
        raise RuntimeError("the parent sent a task without a header")
    if header.task_id and len(data) != header.size:
        raise RuntimeError(f"the task's model ended after {len(data)} of {header.size} bytes")
    return header, bytes(data)


def _workflow_of(bundle: bytes) -> tuple[str, str]:
    """The job's workflow type, and why a relay cannot carry it ('' when it can)."""
    import io
    import zipfile

    import yaml

    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            spec = yaml.safe_load(archive.read("job.yml"))
        workflow = spec["workflow"]
        kind, args = str(workflow["type"]), dict(workflow.get("args") or {})
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile, yaml.YAMLError) as exc:
        return "", f"its job.yml cannot be read ({exc})"
    return kind, refusal_for(kind, args)


def _short(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code.name if code else 'error'}: {details}"
