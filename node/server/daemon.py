"""The server daemon: verify the kit, open the one mTLS port, serve sites and admins until stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from flctl.node.config.alerts import alerts_path, load_alerts
from flctl.node.config.kit import NodeKit
from flctl.node.config.local_files import node_config, policy_and_revocations
from flctl.node.config.metrics import load_metrics_defaults, metrics_path
from flctl.node.config.resources import load_resources, resources_path
from flctl.node.errors import NodeError, StateDamaged
from flctl.node.jobs.job_status import JobStatus, SiteState
from flctl.node.process import pidfile
from flctl.node.process.readiness import ReadyPipe
from flctl.node.security.audit import AuditLog
from flctl.node.security.tls import server_credentials, server_options
from flctl.node.server.admin_service import AdminService
from flctl.node.server.alerting import Alerting
from flctl.node.server.call_caps import CallCaps, Caps
from flctl.node.server.context import ServerContext
from flctl.node.server.disk_guard import DiskGuard
from flctl.node.server.federation_service import FederationService, add_to_server
from flctl.node.server.job_records import save_record
from flctl.node.server.job_runner import JobRunner
from flctl.node.server.report_limits import ReportLimits
from flctl.node.server.retention import Retention
from flctl.node.server.scheduler import Scheduler, fail_start
from flctl.node.server.site_hub import SiteHub
from flctl.node.server.store import JobRow, Store, StoreDamaged
from flctl.node.server.task_board import TaskBoard
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from flctl.node.server.prometheus_endpoint import MetricsEndpoint
    from flctl.node.transport.wss_listener import WssListener

log = logging.getLogger("flctl.server")
# gRPC's sync server gives every call in progress a thread (made only when needed): each site holds a command
# stream and, in a job, a long poll and an upload. `max_calls` in local/resources.yml bounds them (CallCaps refuses
# the rest at once); the pool has room beyond it for those refusals, and gRPC itself refuses calls past the pool's
# size, so no call ever waits for a thread.
REFUSAL_THREADS = 96
RESTART_GRACE_S = 15.0
STOP_GRACE_S = 0.5
"""How long calls in progress may take to finish when the server stops (streams are ended before that)."""


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    """The last net under every thread of the server: an exception no loop caught reaches the log, not only stderr."""
    name = args.thread.name if args.thread is not None else "?"
    log.error("thread %s ended with an exception", name, exc_info=args.exc_value or True)


class ServerDaemon:
    def __init__(self, kit: NodeKit, workspace: Path) -> None:
        self._ready = ReadyPipe()
        config = node_config(kit, "server", workspace)
        self.kit = kit
        self.workspace = workspace
        audit = AuditLog(workspace / "audit.jsonl", key_pem=kit.key_pem, actor="server")
        resources = load_resources(resources_path(kit.root))
        metrics_defaults = load_metrics_defaults(metrics_path(kit.root))
        alerts = load_alerts(alerts_path(kit.root))
        self.disk = DiskGuard(workspace, resources.disk_reserve_bytes, self._disk_full)
        try:
            store = Store(workspace / "server.db",
                          on_event=lambda job, kind, msg, _data: self._audit_event(job, kind, msg),
                          on_full=self.disk.release, on_job=self._save_record)
        except StoreDamaged as exc:
            raise StateDamaged(
                f"{exc}; the server will not start on it. Run `flctl node recover {kit.root} -w {workspace}`: it "
                f"moves the damaged file aside (kept) and rebuilds the jobs from {workspace / 'jobs'}, saying what it "
                "could not recover") from None
        policy, revocations = policy_and_revocations(
            kit, workspace, lambda origin, why: audit.append("server", "crl.refused", file=origin, reason=why))
        board, hub = TaskBoard(), SiteHub()
        self._poke_scheduler: Callable[[], None] = lambda: None
        runner = JobRunner(store, board, hub, workspace / "jobs", lambda _job: self._poke_scheduler(),
                           spare=resources.spare_job_process, job_isolation=resources.job_isolation,
                           kit_root=kit.root)
        runner.feeders.defaults = metrics_defaults
        self.ctx = ServerContext(kit, workspace, store, board, hub, runner, config.heartbeat.interval_s,
                                 config.heartbeat.timeout_s, audit, policy, revocations, self.disk)
        self.scheduler = Scheduler(self.ctx, resources.max_concurrent_jobs)
        self._poke_scheduler = self.scheduler.poke
        listen = config.listen or config.server
        self.address = f"{listen.host}:{listen.port}"
        self._wss_at = (listen.host, config.wss_port, resources.tls_min_version)  # sites on transport: wss
        self._wss_tokens = resources.wss_token_auth
        self._wss: WssListener | None = None
        workers = resources.max_calls + REFUSAL_THREADS
        self.caps = CallCaps(Caps(resources.max_calls, resources.max_streams, resources.max_calls_per_peer,
                                  resources.max_streams_per_peer))
        handshake = ("grpc.server_handshake_timeout_ms", int(resources.handshake_timeout_s * 1000))
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                                   options=[*server_options(resources.stream_window_bytes), handshake],
                                   interceptors=[self.caps], maximum_concurrent_rpcs=workers)
        limits = ReportLimits(resources.max_log_line_chars, resources.max_log_lines_per_minute,
                              resources.max_metrics_per_minute)
        add_to_server(FederationService(self.ctx, self.scheduler.poke, limits), self._server)
        pb_grpc.add_AdminServicer_to_server(AdminService(self.ctx, self.scheduler.poke), self._server)
        self._stopped = threading.Event()
        self._stopping = False
        self._retention = Retention(self.ctx, resources.retention_days) if resources.retention_days else None
        self._metrics_at = (resources.metrics_host, resources.metrics_port)
        self._metrics: MetricsEndpoint | None = None
        self._alerting = Alerting(self.ctx, alerts) if alerts is not None else None

    def _audit_event(self, job_id: str, kind: str, message: str) -> None:
        """A job event into the audit log. A write that fails (beyond a full disk, which `disk.call` handles) is
        logged, not raised: the event is stored, and the job must not stop halfway through a change."""
        try:
            self.disk.call(lambda: self.ctx.audit.append("server", f"job.{kind}", job_id=job_id, message=message))
        except Exception:
            log.exception("could not write the event %s of job %s to the audit log %s", kind, job_id,
                          self.ctx.audit.path)

    def _save_record(self, job: JobRow) -> None:
        """The job's row on disk beside its bundle (what `flctl node recover` rebuilds it from); a failure is logged."""
        try:
            save_record(self.workspace / "jobs" / job.id, job)
        except OSError:
            log.exception("could not write the record of job %s", job.id)

    def start(self) -> None:
        threading.excepthook = _log_thread_death
        self.disk.arm()
        self._recover()
        try:
            port = self._server.add_secure_port(self.address, server_credentials(self.kit))
        except RuntimeError as exc:
            raise NodeError(f"cannot listen on {self.address} ({exc}); is another server running there?") from None
        if port == 0:
            raise NodeError(f"cannot listen on {self.address}; is another server running there?")
        if self._metrics_at[1]:  # prometheus-client is imported only here, when the endpoint is asked for
            from flctl.node.server.prometheus_endpoint import MetricsEndpoint

            self._metrics = MetricsEndpoint(self.ctx, *self._metrics_at)
            log.info("Prometheus metrics on http://%s/metrics", self._metrics.address)
        self._server.start()
        host, wss_port, tls_min = self._wss_at
        if wss_port is not None:
            from flctl.node.transport.wss_listener import WssListener

            self._wss = WssListener(self.kit, host, wss_port, host, port, tls_min, self._wss_tokens,
                                    lambda serial: serial in self.ctx.revocations)
            log.info("WebSocket tunnels (transport: wss) on %s", self._wss.address)
        pidfile.write(self.workspace)
        self.scheduler.start()
        threading.Thread(target=self._watch_sites, daemon=True, name="site-watch").start()
        if self._alerting is not None:
            self._alerting.start()
        if self._retention is not None:
            threading.Thread(target=self._retention.run, args=(self._stopped,), daemon=True, name="retention").start()
        log.info("server %s of project %s listening on %s", self.kit.info.name, self.ctx.project, self.address)
        self._ready.notify()
        self.ctx.runner.prepare_spare()

    def _recover(self) -> None:
        """Jobs a previous run left RUNNING resume from their last checkpoint, on the same sites."""
        for job in self.ctx.store.list_jobs((JobStatus.RUNNING,)):
            sites = sorted(job.site_states)
            if not sites or not (self.ctx.jobs_dir() / job.id / "signature.json").is_file():
                self.ctx.store.update_job(job.id, status=JobStatus.FAILED, ended_at=time.time(),
                                          error="the server restarted and cannot resume this job")
                self.ctx.store.add_event(job.id, JobStatus.FAILED.event_kind,
                                         "job failed: the server restarted and cannot resume it",
                                         {"status": JobStatus.FAILED})
                continue
            log.info("resuming job %s on %s", job.id, ", ".join(sites))
            try:
                self.ctx.runner.start(job, sites, resume=True)
            except Exception as exc:
                log.exception("could not resume job %s", job.id)
                fail_start(self.ctx.store, job.id, exc)

    def _disk_full(self) -> None:
        """The workspace's disk is full: running jobs could save nothing more, so they fail now, saying why."""
        for job_id in self.ctx.runner.running():
            try:
                self.ctx.runner.fail(job_id, f"the server's disk is full (no space left under {self.workspace}); "
                                             "free space there, then submit the job again")
            except Exception:
                log.exception("could not fail job %s for the full disk", job_id)

    def _watch_sites(self) -> None:
        """Sites of a running job that fall silent fail their part (the workflow goes on without them)."""
        # After a restart, sites reconnect with backoff (up to 10 s between tries): give them that long.
        grace_until = time.time() + max(0.0, RESTART_GRACE_S - self.ctx.heartbeat_timeout_s)
        while not self._stopped.wait(1.0):
            try:
                self.ctx.store.flush()  # heartbeats reach the database within a second even when they stop coming
                self._drop_silent_sites(grace_until)
            except Exception:  # the disk is full, the store failed, a bug: log it and keep watching
                log.exception("could not check on the sites of running jobs (trying again in a second)")

    def _drop_silent_sites(self, grace_until: float) -> None:
        for job_id in self.ctx.runner.running():
            job = self.ctx.store.get_job(job_id)
            if job is None:
                continue
            # Who is online is read after the job's states: a site that came back (and rejoined) in between is
            # then seen online, never dropped a second time on a stale view.
            online = set(self.ctx.online_sites(since=min(time.time(), grace_until)))
            for site, (state, _round, _error) in job.site_states.items():
                if site not in online and not state.is_out():
                    self.ctx.runner.failure(job_id, site, f"{site} went offline")
                    self.ctx.store.set_site_state(job_id, site, SiteState.OFFLINE)

    def wait(self) -> None:
        self._stopped.wait()

    def stop(self) -> None:
        # A second SIGINT/SIGTERM during the stop (scancel signals the node, and its batch script forwards the
        # same signal) runs this again inside the first call, in the same thread: it must return, not stop twice.
        if self._stopped.is_set() or self._stopping:
            return
        self._stopping = True
        log.info("server stopping")
        self.scheduler.stop()
        if self._alerting is not None:
            self._alerting.stop()
        if self._metrics is not None:
            self._metrics.close()
        self.ctx.hub.close()
        if self._wss is not None:
            self._wss.close()
        self.ctx.runner.stop_all()
        self._server.stop(grace=STOP_GRACE_S).wait(STOP_GRACE_S + 5)
        self.ctx.store.close()
        pidfile.remove(self.workspace)
        self._stopped.set()
