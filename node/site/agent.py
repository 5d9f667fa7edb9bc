"""The site daemon: stays connected to the server, heartbeats, and starts or stops job processes.

Each job runs in a child process of its own (`flctl.node.site.job_process`), in its own
process group, so a job that crashes or is aborted never takes this daemon down. A spare job
process (`flctl.node.process.spare_process`), started once the site is registered and again after each job
ends, takes the next job, so a job does not wait for an interpreter to start and import.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from flctl.node.config.kit import NodeKit
from flctl.node.config.local_files import node_config, policy_and_revocations
from flctl.node.config.resources import load_resources, resources_path
from flctl.node.errors import NodeError
from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.process import pidfile
from flctl.node.process.backoff import Backoff
from flctl.node.process.readiness import ReadyPipe, StartGate
from flctl.node.process.spare_process import SPARE_FLAG, SpareProcess
from flctl.node.relay.failover import Route
from flctl.node.security.audit import AuditLog
from flctl.node.security.authz import Actor, decide, signer_allowed
from flctl.node.security.path_names import BadName, check_path_name
from flctl.node.security.revocation import CrlRefused
from flctl.node.site.job_launch import JobPlacement, SiteJob, read_script_group, write_placement
from flctl.node.site.job_process import isolation_note, job_isolation
from flctl.node.site.job_slots import JobSlots
from flctl.node.site.placement import Ask, cuda_visible, never_fits
from flctl.node.site.sandbox import not_dumpable
from flctl.node.site.site_capacity import site_capacity
from flctl.node.transport.channel import site_channel, site_transport
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc
from flctl.node.wire.resources_serde import load_to_pb

if TYPE_CHECKING:
    from flctl.node.jobs.job_spec import JobSpec

log = logging.getLogger("flctl.site")
STOP_GRACE_S = 5.0
ENDED_GRACE_S = 10.0
VERSION = "1"
JOB_PROCESS = [sys.executable, "-m", "flctl.node.site.job_process"]


@dataclass
class _Job:
    job_id: str
    process: subprocess.Popen[bytes]
    job_dir: Path


class SiteAgent:
    def __init__(self, kit: NodeKit, workspace: Path) -> None:
        self._ready, self._gate = ReadyPipe(), StartGate()
        config = node_config(kit, "site", workspace)
        self.kit = kit
        self.route = Route(kit)  # its relay, or the server while the relay is down (failover: server)
        self.workspace = workspace
        self.heartbeat_s = config.heartbeat.interval_s
        self.audit = AuditLog(workspace / "audit.jsonl", key_pem=kit.key_pem, actor=kit.info.name)
        self.policy, self.revocations = policy_and_revocations(
            kit, workspace, lambda origin, why: self.audit.append(kit.info.name, "crl.refused", file=origin,
                                                                  reason=why))
        resources = load_resources(resources_path(kit.root))
        self.window = resources.stream_window_bytes
        self.transport = site_transport(kit, resources)  # grpc or wss (flctl.node.transport)
        not_dumpable()  # its environ (cloud credentials) and memory (the kit's key): not readable by a job's script
        self.isolation = job_isolation(resources)
        self.isolation_note = isolation_note(self.isolation, resources)
        self.refuse_jobs = self.isolation.kind == "none" and resources.job_isolation == "required"
        if self.isolation.kind == "none":
            log.warning("job scripts at this site run unconfined (no Landlock in this kernel, not running as root to "
                        "use another user); %s", "every job is refused (job_isolation: required in "
                        f"{resources_path(kit.root)}; set preferred to run them anyway)" if self.refuse_jobs else
                        f"job_isolation: {resources.job_isolation}")
        else:
            log.info("job scripts at this site are confined: %s", self.isolation_note)
        self.retention_days = resources.retention_days
        self.slots = JobSlots(site_capacity(resources, resources_path(kit.root), kit.info.name))  # jobs get them
        self._queued: dict[str, threading.Event] = {}  # jobs waiting for their resources: set to give up waiting
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call: Any = None
        self.connected = threading.Event()
        self._job_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._spare = SpareProcess([*JOB_PROCESS, SPARE_FLAG], resources.spare_job_process,
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
                                   env=self._job_env)

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        """Connect, register and follow commands until `stop()`; reconnect with backoff and jitter."""
        pidfile.write(self.workspace)
        if self.retention_days:
            threading.Thread(target=self._expire_workspaces, daemon=True, name="retention").start()
        backoff = Backoff()
        try:
            self._gate.wait()  # started together with its server: until the server listens
            while not self._stop.is_set():
                try:
                    self._session(backoff)
                    delay = backoff.next_delay()
                except grpc.RpcError as exc:
                    if self._stop.is_set():
                        break
                    delay = backoff.next_delay()
                    log.warning("server %s unreachable (%s); retrying in %.1f s", self.route.kit.target,
                                _short(exc), delay)
                    if exc.code() != grpc.StatusCode.CANCELLED:  # not the end of a session on failover
                        self.route.failed()
                self.connected.clear()
                self._stop.wait(delay)
        finally:
            self._spare.close()
            self._stop_all_jobs("the site is stopping")
            pidfile.remove(self.workspace)

    def stop(self) -> None:
        """End run(): from a signal handler (scancel, `flctl node stop`) at any point, the session's first moments
        between registering and the command stream included."""
        self._stop.set()
        self._gate.open()
        call = self._call
        if call is not None:
            call.cancel()

    def _session(self, backoff: Backoff) -> None:
        with site_channel(self.route.kit, self.window, self.transport) as chan:
            stub = pb_grpc.FederationStub(chan)
            stub.Register(pb.RegisterRequest(version=VERSION, running_jobs=self.running_jobs(),
                                             isolation=self.isolation_note,
                                             resources=load_to_pb(self.slots.report())), timeout=10)
            log.info("site %s registered with %s", self.kit.info.name, self.route.kit.target)
            backoff.reset()
            self.connected.set()
            if self.route.on_fallback:  # on the server while the relay is down: back to the relay once it answers
                threading.Thread(target=self.route.probe_primary, daemon=True, args=(
                    self.connected, self._stop, lambda: self._call.cancel() if self._call else None)).start()
            self._ready.notify()
            self._spare.ensure()
            beat = threading.Thread(target=self._heartbeats, args=(stub,), daemon=True)
            beat.start()
            call = stub.Commands(pb.Empty())
            self._call = call
            if self._stop.is_set():  # stopped since registering (before the call was there to cancel): stop() set
                call.cancel()        # the flag before it read `_call`, so one of the two always cancels it
            for command in call:
                if command.HasField("start"):
                    threading.Thread(target=self._start_job, args=(stub, command.start), daemon=True).start()
                elif command.HasField("stop"):
                    self._stop_job(command.stop.job_id, command.stop.reason)
            if not self._stop.is_set():
                log.warning("the server closed the command stream; reconnecting")

    def _expire_workspaces(self) -> None:
        """At start and every hour: remove ended jobs' workspaces older than `retention_days` (audited)."""
        from flctl.node.site import retention

        def removed(job_id: str, written: float) -> None:
            self.audit.append(self.kit.info.name, "job.expire", job_id=job_id, last_written=written,
                              retention_days=self.retention_days)

        while True:
            retention.sweep(self.workspace / "jobs", self.retention_days, set(self.running_jobs()), removed)
            if self._stop.wait(retention.SWEEP_S):
                return

    def _heartbeats(self, stub: pb_grpc.FederationStub) -> None:
        refused = b""
        while self.connected.is_set() and not self._stop.is_set():
            try:
                reply = stub.Heartbeat(pb.HeartbeatRequest(running_jobs=self.running_jobs(),
                                                           crl_number=self.revocations.number,
                                                           resources=load_to_pb(self.slots.report())), timeout=10)
                if reply.crl_pem:
                    try:
                        number = self.revocations.install(reply.crl_pem)
                        self.audit.append(self.kit.info.name, "crl.install", crl_number=number)
                    except CrlRefused as exc:
                        if reply.crl_pem != refused:  # the server sends it again with every heartbeat: once is enough
                            refused = reply.crl_pem
                            self.revocations.refuse("the CRL the server sent", str(exc))
                for job_id in reply.stop_jobs:
                    self._stop_job(job_id, "the server no longer runs it")
            except grpc.RpcError as exc:
                log.debug("heartbeat failed: %s", _short(exc))
            self._stop.wait(self.heartbeat_s)

    def running_jobs(self) -> list[str]:
        with self._lock:
            return [j for j, job in self._jobs.items() if job.process.poll() is None]

    # ------------------------------------------------------------------ jobs
    def _start_job(self, stub: pb_grpc.FederationStub, start: pb.StartJob) -> None:
        job_id = start.job_id
        try:
            check_path_name(job_id, "job id the server sent")  # it becomes a folder name here
        except BadName as exc:
            self._refuse(stub, start, str(exc))
            return
        with self._lock:
            if job_id in self._queued or (job_id in self._jobs and self._jobs[job_id].process.poll() is None):
                return
            self._queued[job_id] = threading.Event()
        try:
            self._start_placed(stub, start)
        finally:
            with self._lock:
                self._queued.pop(job_id, None)

    def _start_placed(self, stub: pb_grpc.FederationStub, start: pb.StartJob) -> None:
        from flctl.node.jobs.bundle import extract_bundle
        job_id = start.job_id
        job_dir = self.workspace / "jobs" / job_id
        try:
            data = b"".join(chunk.data for chunk in stub.FetchBundle(pb.JobRef(job_id=job_id), timeout=300))
            if hashlib.sha256(data).hexdigest() != start.bundle_sha256:
                raise NodeError("the job bundle arrived damaged (digest mismatch)")
            refusal = self._refusal(data, start)
            if refusal:
                self._refuse(stub, start, refusal)
                return
            if (job_dir / "job").exists():
                shutil.rmtree(job_dir / "job")
            job_dir.mkdir(parents=True, exist_ok=True)
            self.route.mark_job(job_dir)
            extract_bundle(data, job_dir / "job")
            refusal = self._hand_over_psi(job_dir / "job") or self._never_fits(job_dir / "job")
            if refusal:
                shutil.rmtree(job_dir / "job", ignore_errors=True)
                self._refuse(stub, start, refusal)
                return
        except (grpc.RpcError, NodeError, OSError) as exc:
            message = f"could not start job {job_id}: {exc if not isinstance(exc, grpc.RpcError) else _short(exc)}"
            if _disk_full(exc):
                message = (f"the site's disk is full (no space left under {job_dir.parent}); free space there, "
                           "then submit the job again")
            shutil.rmtree(job_dir / "job", ignore_errors=True)  # nothing half-extracted is left
            log.error(message)
            self._report_failure(stub, job_id, message)
            return
        if not self._place(stub, job_id, job_dir):
            return
        try:
            process = self._launch(job_id, job_dir)
        except OSError as exc:
            self.slots.release(job_id)
            self._report_failure(stub, job_id, f"could not start job {job_id}: {exc}")
            return
        if process.stdin is not None:
            process.stdin.close()
        job = _Job(job_id, process, job_dir)
        with self._lock:
            self._jobs[job_id] = job
        threading.Thread(target=self._after_job, args=(job,), daemon=True).start()
        self.audit.append(self.kit.info.name, "job.start", job_id=job_id, name=start.name, submitter=start.submitter,
                          bundle_sha256=start.bundle_sha256)
        log.info("job %s (%s from %s) started as process %d", job_id, start.name, start.submitter, process.pid)

    def _launch(self, job_id: str, job_dir: Path) -> subprocess.Popen[bytes]:
        """The job's process: a spare one handed the job, else a new one."""
        log_path = job_dir / "job_process.log"
        args = SiteJob(self.kit.root, job_dir, job_id).argv()
        process = self._spare.take(args, output=log_path)
        if process is None:
            with open(log_path, "ab") as out:
                process = subprocess.Popen([*JOB_PROCESS, *args], stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True, env=self._job_env)
        return process

    def _never_fits(self, job_folder: Path) -> str:
        """Why this site can never give the job what its job.yml asks ('' when it can)."""
        spec = _job_spec(job_folder)
        return never_fits(self.slots.capacity, Ask.of(spec.resources)) if spec is not None else ""

    def _place(self, stub: pb_grpc.FederationStub, job_id: str, job_dir: Path) -> bool:
        """Wait until the job's resources are free, then hold them and write what it was given for its process
        (`job_launch.JobPlacement`). False when it stopped waiting (the job was stopped, or the site)."""
        spec = _job_spec(job_dir / "job")
        ask = Ask.of(spec.resources) if spec is not None else Ask()
        with self._lock:
            cancelled = self._queued.get(job_id) or threading.Event()

        def waiting(reason: str) -> None:
            line = f"{self.kit.info.name} queues the job until it has {reason} (it asks {ask.describe()})"
            log.info("job %s: %s", job_id, line)
            self._report_line(stub, job_id, line)

        grant = self.slots.acquire(job_id, ask, cancelled, waiting)
        if grant is None:
            shutil.rmtree(job_dir / "job", ignore_errors=True)
            return False
        write_placement(job_dir, JobPlacement(grant.cpus, cuda_visible(self.slots.capacity, grant)))
        return True

    def _after_job(self, job: _Job) -> None:
        """Once a job's process has exited, what it held is free, and a spare waits for the next job (none while
        the site stops)."""
        job.process.wait()
        self.slots.release(job.job_id)
        self._keep_psi(job)
        if not self._stop.is_set():
            self._spare.ensure()

    def _hand_over_psi(self, job_folder: Path) -> str:
        """Give a job the intersection its job.yml's `psi_job` names (`psi_results`); why not, or ''."""
        from flctl.node.site import psi_results

        spec = _job_spec(job_folder)
        return psi_results.hand_over(self.workspace, job_folder, spec) if spec is not None else ""

    def _keep_psi(self, job: _Job) -> None:
        """Keep the intersection a psi job wrote, for the jobs that name it (`psi_results`)."""
        from flctl.node.site import psi_results

        spec = _job_spec(job.job_dir / "job")
        if spec is None or spec.workflow.type != "psi":
            return
        try:
            kept = psi_results.keep(self.workspace, job.job_dir / "job", spec)
        except OSError as exc:
            log.warning("could not keep the intersection of psi job %s: %s", job.job_id, exc)
            return
        if kept is not None:
            log.info("kept the intersection of psi job %s (%s) at %s", job.job_id, spec.name, kept)

    def _refuse(self, stub: pb_grpc.FederationStub, start: pb.StartJob, refusal: str) -> None:
        self.audit.append(self.kit.info.name, "job.refuse", job_id=start.job_id, submitter=start.submitter,
                          reason=refusal)
        log.warning("refusing job %r: %s", start.job_id, refusal)
        self._report_failure(stub, start.job_id, f"{self.kit.info.name} refuses the job: {refusal}")

    def _refusal(self, bundle: bytes, start: pb.StartJob) -> str:
        """Why this site will not run the job ('' when it will): a bad signature, a signature made for another job,
        another site or another time, or its own policy."""
        from flctl.node.jobs.job_signing import SignatureRefused, check_target, verify_bundle

        try:
            signer, claims = verify_bundle(bundle, start.signature, start.signer_cert_pem, self.kit.ca_pem,
                                           start.claims_json, self.revocations)
        except SignatureRefused as exc:
            return str(exc)
        if self.refuse_jobs:
            return ("this site requires job isolation (job_isolation: required) and has neither Landlock nor root to "
                    "run the script as another user")
        mismatch = check_target(claims, start.job_id, start.name, self.kit.info.name)
        if mismatch:
            return mismatch
        actor = Actor(signer.name, signer.org, signer.role or "")
        policy = self.policy.current()
        reason = decide(policy, actor, "submit_job", site_org=self.kit.info.org) or signer_allowed(policy, actor)
        return f"not permitted: {reason}" if reason else ""

    def _report_line(self, stub: pb_grpc.FederationStub, job_id: str, line: str) -> None:
        """A line in the job's log, from this site's daemon (its job process is not started)."""
        try:
            stub.Report(pb.ReportRequest(job_id=job_id, logs=[pb.LogLine(time=time.time(), line=line)]), timeout=10)
        except grpc.RpcError as exc:
            log.warning("could not report to job %s: %s", job_id, _short(exc))

    def _report_failure(self, stub: pb_grpc.FederationStub, job_id: str, message: str) -> None:
        try:
            stub.Report(pb.ReportRequest(job_id=job_id, status=SiteState.FAILED, error=message,
                                         logs=[pb.LogLine(time=time.time(), line=message)]), timeout=10)
        except grpc.RpcError as exc:
            log.warning("could not report the failure of job %s: %s", job_id, _short(exc))

    def _stop_job(self, job_id: str, reason: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            queued = self._queued.get(job_id)
        if queued is not None:  # still waiting for its resources: it stops waiting
            queued.set()
        if job is None or job.process.poll() is not None:
            return
        # A job that ended on its own lets its process report and exit first; an aborted one stops now.
        grace = 0.0 if reason == JobStatus.ABORTED.lower() else ENDED_GRACE_S
        log.info("stopping job %s: %s", job_id, reason)
        threading.Thread(target=_terminate, args=(job, grace), daemon=True).start()

    def _stop_all_jobs(self, reason: str) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            for queued in self._queued.values():
                queued.set()
        threads = [threading.Thread(target=_terminate, args=(job,)) for job in jobs if job.process.poll() is None]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(STOP_GRACE_S + 2)


def _terminate(job: _Job, grace_s: float = 0.0) -> None:
    """After `grace_s`, SIGTERM the job process (it ends its training script), then SIGKILL both groups."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        job.process.wait(grace_s)
    if job.process.poll() is None:
        _signal_group(job.process.pid, signal.SIGTERM)
    try:
        job.process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        # It could not end its script itself: end the script's group (recorded by the job process) too.
        script = read_script_group(job.job_dir, log)
        if script is not None:
            _signal_group(script, signal.SIGKILL)
        _signal_group(job.process.pid, signal.SIGKILL)
        job.process.wait(5)


def _job_spec(job_folder: Path) -> JobSpec | None:
    """The job.yml of a job extracted at this site; None when it cannot be read (its job process says why)."""
    from flctl.node.jobs.job_spec import load_job

    try:
        return load_job(job_folder).spec
    except (NodeError, OSError):
        return None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or the error it was raised from or while handling, is a write that found no space left."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _short(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code.name if code else 'error'}: {details}"
