"""The daemon's side of running jobs: one child process per job, and the routing around it.

Starts `flctl.node.server.job_process` for a job (handing the job to a spare process started
ahead of time when one is waiting, see `flctl.node.process.spare_process`), turns its requests into posted
tasks, store records and events, passes site answers back to it, and ends the job (finished,
failed or aborted) whatever the child does, crash included: a job ends when its process says
`done`, or when the process exits without saying it. What the two say is typed in `job_messages`
(the server job link): a line of the process's that is not a JSON object is stray output, kept in the
job's log; a message that does not validate is logged and refused, and fails the job (its two ends
disagree; it could only hang).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flctl.node.jobs import checkpoints
from flctl.node.jobs.job_status import DROPPED, JobStatus, SiteState
from flctl.node.jobs.tasks import TaskKind
from flctl.node.process.links import LinkError
from flctl.node.process.spare_process import SPARE_FLAG, SpareProcess
from flctl.node.server import job_messages
from flctl.node.server.job_records import log_files, metrics_json
from flctl.node.server.metrics_export.launch import Feeders
from flctl.node.server.site_hub import SiteHub
from flctl.node.server.store import JobRow, Store
from flctl.node.server.task_board import INLINE_BYTES, PostedTask, TaskBoard
from flctl.node.workflows.state import state_path

QUIET_KINDS = frozenset({TaskKind.FLOWER_FLEET})
"""Task kinds that are transport, not steps of the job: a Flower app's relay posts one to a site for every batch of
its SuperNode's calls (several a round, one a second when idle). Not each an event in the job's records and the
audit log; the job's start, its rounds and its end are."""


log = logging.getLogger("flctl.server")
KILL_GRACE_S = 5.0
"""How long an aborted job process, or one that said `done`, may take to exit before it is killed."""
JOB_PROCESS = [sys.executable, "-m", "flctl.node.server.job_process"]


@dataclass
class _Running:
    job: JobRow
    sites: list[str]
    process: subprocess.Popen[str]
    stdin_lock: threading.Lock
    ended: bool = False
    failed_because: str = ""  # set by `fail`: however the process then ends, the job fails for this reason


class JobRunner:
    def __init__(self, store: Store, board: TaskBoard, hub: SiteHub, jobs_dir: Path,
                 on_end: Callable[[str], None], spare: bool = True, job_isolation: str = "required",
                 kit_root: Path | None = None) -> None:
        self._store = store
        self._kit_root = kit_root  # the job process reads the server kit's HE public context from it
        self._job_isolation = job_isolation  # how the job process confines job code it runs (an initial model's)
        self._board = board
        self._hub = hub
        self._jobs_dir = jobs_dir
        self._on_end = on_end
        self._running: dict[str, _Running] = {}
        self._lock = threading.RLock()
        self._spare = SpareProcess([*JOB_PROCESS, SPARE_FLAG], enabled=spare, **self._popen_args())
        self.feeders = Feeders(store.path, lambda job_id, line: store.add_logs(job_id, "server", [(time.time(), line)]),
                               {**self._popen_args(), "stdout": subprocess.DEVNULL})
        """The jobs' metrics exporters (`flctl.node.server.metrics_export`); the daemon sets their defaults."""

    @staticmethod
    def _popen_args() -> dict[str, Any]:
        return {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True,
                "bufsize": 1, "start_new_session": True, "env": {**os.environ, "PYTHONUNBUFFERED": "1"}}

    def prepare_spare(self) -> None:
        """Start a spare job process for the next job, unless one is waiting (the daemon calls it once ready)."""
        self._spare.ensure()

    def job_dir(self, job_id: str) -> Path:
        return self._jobs_dir / job_id

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def sites_of(self, job_id: str) -> list[str]:
        with self._lock:
            run = self._running.get(job_id)
            return list(run.sites) if run else []

    # ------------------------------------------------------------------ start
    def start(self, job: JobRow, sites: list[str], resume: bool = False) -> None:
        """Start `job` on `sites`; with `resume`, continue after the last round checkpointed before a restart.
        When that fails halfway, what was begun is undone (its process ended, its tasks closed, its sites told to
        stop) and the exception is raised for the caller to fail the job with."""
        try:
            self._start(job, sites, resume)
        except Exception:
            with self._lock:
                run = self._running.pop(job.id, None)
            if run is not None:
                run.ended = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)
            self._board.close_job(job.id, JobStatus.FAILED)
            self._board.forget(job.id)
            for site in sites:  # a site already told to start is told to stop
                with contextlib.suppress(Exception):
                    self._hub.push(site, {"stop": {"job_id": job.id, "reason": JobStatus.FAILED.lower()}})
            raise

    def _start(self, job: JobRow, sites: list[str], resume: bool) -> None:
        job_dir = self.job_dir(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        plan = job_messages.RunPlan(job_id=job.id, spec=job.spec, sites=sites, min_sites=job.min_sites,
                                    job_isolation=self._job_isolation,
                                    kit_root=str(self._kit_root) if self._kit_root else None)
        last = checkpoints.last_round(job_dir) if resume else None
        if last is not None:
            state = state_path(job_dir, f"round-{last}")  # a stateful workflow's state of that round
            plan = plan.model_copy(update={"initial": str(job_dir / "models" / f"round-{last}.safetensors"),
                                           "start_round": last + 1, "state": str(state) if state.is_file() else None})
        (job_dir / "run.json").write_bytes(job_messages.RUN_PLAN.encode(plan))
        if resume:
            self._store.add_event(job.id, "resumed", "the server restarted; the job resumes at round "
                                  f"{plan.start_round}", {"round": plan.start_round})
        else:
            self._store.update_job(job.id, status=JobStatus.RUNNING, started_at=time.time(), wait_reason="")
            self._store.set_site_states(job.id, sites, SiteState.STARTING)
        self._board.open_job(job.id, sites)
        process = self._spare.take([str(job_dir)]) or subprocess.Popen([*JOB_PROCESS, str(job_dir)],
                                                                          **self._popen_args())
        run = _Running(job, sites, process, threading.Lock())
        with self._lock:
            self._running[job.id] = run
        if not resume:
            self._store.add_event(job.id, "started", f"job started on {len(sites)} sites: {', '.join(sites)}",
                                  {"sites": sites})
        self._push_start(job, sites)
        self.feeders.start(job.id, job_dir, job.spec, sites)
        assert process.stdout is not None and process.stderr is not None
        threading.Thread(target=self._read_requests, args=(run, process.stdout), daemon=True,
                         name=f"job-{job.id[:8]}").start()
        threading.Thread(target=self._read_stderr, args=(job.id, process.stderr), daemon=True).start()

    # ------------------------------------------------------------------ child -> daemon
    def _read_requests(self, run: _Running, stream: IO[str]) -> None:
        done = False
        for line in stream:
            if not line.lstrip().startswith("{"):  # stray output on the process's stdout: it goes to the job's log
                self._refused(run, LinkError(job_messages.LINK, f"not a JSON object: {line.rstrip()[:200]!r}"))
                self._guarded(run.job.id, functools.partial(self._store.add_logs, run.job.id, "server",
                                                            [(time.time(), line.rstrip())]))
                continue
            try:
                msg = job_messages.JOB_REQUESTS.decode(line)
            except LinkError as exc:  # the two ends disagree: the job fails, saying why, rather than hang
                self._refused(run, exc)
                if not done:
                    self._guarded(run.job.id, functools.partial(self.fail, run.job.id, str(exc)))
                continue
            if isinstance(msg, job_messages.JobDone) and not done:
                done = True  # the job has ended: say so now, not once the interpreter has wound down
                self._guarded(run.job.id, functools.partial(self._finish, run, JobStatus(msg.status), msg.error))
                threading.Thread(target=self._reap_done, args=(run,), daemon=True).start()
                continue
            if not done:
                try:
                    self._handle(run, msg)
                except Exception as exc:  # the job fails, saying why; the process is ended, so the stream ends
                    log.exception("job %s: could not handle the job process's %r", run.job.id, msg.kind)
                    reason = (f"the server could not handle the job's {msg.kind!r} request: "
                              f"{type(exc).__name__}: {exc}")
                    self._guarded(run.job.id, functools.partial(self.fail, run.job.id, reason))
        code = run.process.wait()
        if not done:
            self._guarded(run.job.id, lambda: self._finish(
                run, JobStatus.FAILED, f"the job process exited with code {code} before the job ended"))

    def _refused(self, run: _Running, error: LinkError) -> None:
        """Log a message refused on the job's link, in the daemon's log and the job's."""
        log.warning("job %s: %s", run.job.id, error)
        self._guarded(run.job.id, functools.partial(self._store.add_logs, run.job.id, "server",
                                                    [(time.time(), str(error))]))

    @staticmethod
    def _guarded(job_id: str, action: Callable[[], object]) -> None:
        """Run `action` on a job's own thread; an exception is logged, never lost with the thread."""
        try:
            action()
        except Exception:
            log.exception("job %s: could not end the job", job_id)

    def _reap_done(self, run: _Running) -> None:
        """A job process that said `done` exits by itself; one that lingers is killed."""
        try:
            run.process.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGKILL)

    def _read_stderr(self, job_id: str, stream: IO[str]) -> None:
        for line in stream:  # read to the end whatever happens, or the job process blocks on a full pipe
            try:
                self._store.add_logs(job_id, "server", [(time.time(), line.rstrip())])
            except Exception:
                log.exception("job %s: could not store a line of the job process's output: %s", job_id,
                              line.rstrip())

    def _handle(self, run: _Running, msg: job_messages.JobRequest) -> None:
        job_id = run.job.id
        if isinstance(msg, job_messages.PostTask):
            payload = Path(msg.payload)
            try:
                data = payload.read_bytes() if payload.stat().st_size <= INLINE_BYTES else None
            except FileNotFoundError:  # a job process that died since: the sites are told the job ended
                data = None
            task = PostedTask(msg.task_id, msg.task_kind, msg.round, payload, msg.meta, msg.timeout_s, data,
                              json.dumps(msg.meta))
            self._store.update_job(job_id, round=task.round)
            self._store.set_site_states(job_id, msg.sites, SiteState.WORKING, task.round, unless=DROPPED)
            self._board.post(job_id, task, msg.sites)
            if task.kind not in QUIET_KINDS:
                self._store.add_event(job_id, "task", f"round {task.round + 1}: {task.kind} sent to "
                                      f"{len(msg.sites)} sites", {"round": task.round, "task": task.kind})
        elif isinstance(msg, job_messages.CancelTask):
            self._board.cancel(job_id, msg.task_id, msg.sites)
            self._store.set_site_states(job_id, msg.sites, SiteState.LATE)
        elif isinstance(msg, job_messages.RoundDone):
            self._store.add_round_metrics(job_id, msg.round, msg.metrics)
            self._store.add_event(job_id, "round", f"round {msg.round + 1} complete",
                                  {"round": msg.round, "metrics": msg.metrics})
        elif isinstance(msg, job_messages.ModelSaved):
            self._store.add_event(job_id, "model", f"model {msg.name} saved", {"name": msg.name})
        elif isinstance(msg, job_messages.ReportSaved):
            self._store.add_event(job_id, "report", f"report {msg.name} saved", {"name": msg.name})
        elif isinstance(msg, job_messages.LogLine):
            self._store.add_logs(job_id, "server", [(time.time(), msg.line)])

    # ------------------------------------------------------------------ daemon -> child
    def _tell(self, job_id: str, message: job_messages.JobAnswer) -> None:
        """Write `message` to the job's process; one that has exited (it ends the job itself) cannot read it."""
        with self._lock:
            run = self._running.get(job_id)
        if run is None or run.process.stdin is None:
            return
        line = job_messages.JOB_ANSWERS.encode(message).decode("utf-8")
        with run.stdin_lock:
            try:
                run.process.stdin.write(line)
                run.process.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:  # the job ends when its reader sees the exit
                log.warning("job %s: %s: could not tell the job process %r (%s: %s); it has exited or is exiting",
                            job_id, job_messages.JOB_ANSWERS.name, message.kind, type(exc).__name__, exc)

    def result(self, job_id: str, site: str, task_id: str, payload: Path | bytes, num_examples: int,
               metrics: dict[str, float], meta: dict[str, Any]) -> None:
        """Hand a site's result to the job process: a file in the job's folder, or (up to INLINE_BYTES) its bytes."""
        self._store.set_site_state(job_id, site, SiteState.ANSWERED)
        path, data = ("", base64.b64encode(payload).decode("ascii")) if isinstance(payload, bytes) else \
            (str(payload), "")
        self._tell(job_id, job_messages.SiteResult(task_id=task_id, site=site, path=path, data=data,
                                                   num_examples=num_examples, metrics=metrics, meta=meta))

    def failure(self, job_id: str, site: str, reason: str, task_id: str = "") -> None:
        self._store.set_site_state(job_id, site, SiteState.FAILED, error=reason)
        self._store.add_event(job_id, "site_failed", f"{site} failed: {reason}", {"site": site, "reason": reason})
        self._tell(job_id, job_messages.SiteFailed(task_id=task_id, site=site, reason=reason))

    def rejoin(self, job_id: str, site: str) -> None:
        """A site that failed or went offline is back: start its part of the job again."""
        with self._lock:
            run = self._running.get(job_id)
        if run is None or site not in run.sites:
            return
        self._store.set_site_state(job_id, site, SiteState.STARTING, error="")
        self._store.add_event(job_id, "site_rejoined", f"{site} rejoins the job", {"site": site})
        self._tell(job_id, job_messages.SiteRejoined(site=site))
        self._push_start(run.job, [site])

    def _push_start(self, job: JobRow, sites: list[str]) -> None:
        signed = json.loads((self.job_dir(job.id) / "signature.json").read_text())
        start = {"job_id": job.id, "name": job.name, "bundle_sha256": job.bundle_sha256, "submitter": job.submitter,
                 "submitter_org": job.submitter_org, "signer_cert_pem": signed["signer_cert_pem"].encode(),
                 "signature": bytes.fromhex(signed["signature"]), "claims_json": signed.get("claims_json", "")}
        for site in sites:
            self._hub.push(site, {"start": dict(start)})

    def abort(self, job_id: str, reason: str) -> bool:
        """Stop a running job: tell the child, then end its process group if it lingers."""
        with self._lock:
            run = self._running.get(job_id)
        if run is None:
            return False
        self._tell(job_id, job_messages.AbortJob(reason=reason))
        threading.Thread(target=self._reap, args=(run, reason), daemon=True).start()
        return True

    def _reap(self, run: _Running, reason: str) -> None:
        try:
            run.process.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGKILL)
            self._guarded(run.job.id, lambda: self._finish(run, JobStatus.ABORTED, reason))

    def fail(self, job_id: str, reason: str) -> bool:
        """End a running job as FAILED for a reason of the server's own (its disk is full): its process is
        killed at once, since it could save nothing more."""
        with self._lock:
            run = self._running.get(job_id)
        if run is None:
            return False
        run.failed_because = reason
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGKILL)
        self._finish(run, JobStatus.FAILED, reason)
        return True

    def stop_all(self) -> None:
        self._spare.close()
        self.feeders.stop_all()
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ end
    def _write_records(self, job_id: str) -> None:
        """Per-site logs and metrics on disk beside the models, for whoever reads the job folder."""
        job_dir = self.job_dir(job_id)
        # First what is no longer needed (it frees space), including a model half-written when the disk filled up.
        shutil.rmtree(job_dir / "tasks", ignore_errors=True)
        shutil.rmtree(job_dir / "results", ignore_errors=True)
        for partial in (job_dir / "models").glob(".*.tmp"):
            partial.unlink(missing_ok=True)
        try:
            (job_dir / "logs").mkdir(parents=True, exist_ok=True)
            for name, text in log_files(self._store, job_id).items():
                (job_dir / "logs" / name).write_text(text)
            (job_dir / "metrics.json").write_text(metrics_json(self._store, job_id))
        except OSError as exc:  # the disk is full, say: the store keeps them (`job download` packs them from there)
            self._store.add_logs(job_id, "server", [(time.time(), f"could not write the job's log files: {exc}")])

    def _finish(self, run: _Running, status: JobStatus, error: str) -> None:
        if not status.is_ended():  # a job process that names no end status (or one unknown here) fails its job
            status, error = JobStatus.FAILED, error or f"the job process ended the job as {status}"
        with self._lock:
            if run.ended:
                return
            run.ended = True
            self._running.pop(run.job.id, None)
            if run.failed_because:
                status, error = JobStatus.FAILED, run.failed_because
        job_id = run.job.id
        self._board.close_job(job_id, status)
        self._store.update_job(job_id, status=status, ended_at=time.time(), error=error)
        if status == JobStatus.ABORTED:  # a site waiting, working or late was stopped, not late
            self._store.set_site_states(job_id, run.sites, SiteState.ABORTED,
                                        unless=(SiteState.FINISHED, SiteState.FAILED, SiteState.OFFLINE))
        for site in run.sites:
            self._hub.push(site, {"stop": {"job_id": job_id, "reason": status.lower()}})
        self._write_records(job_id)
        message = f"job {status.lower()}" + (f": {error}" if error else "")
        self._store.add_event(job_id, status.event_kind, message, {"status": status, "error": error})
        self._board.forget(job_id)
        self._spare.ensure()  # for the next job (a no-op once the daemon is stopping)
        self._on_end(job_id)
