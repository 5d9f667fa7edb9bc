"""The simulator's main process: runs the job's workflow against sites hosted by K worker processes.

`simulate()` runs the same workflow class a server job process runs (`LoadedJob.create_workflow()`)
against `SimFederation`, which implements `flctl.node.workflows.base.Federation`: a task goes to each
worker once (params encoded once), each worker hands it to its sites' scripts, and answers come
back as they arrive. Reader threads move every worker's messages (typed in `worker_messages`, the
simulator worker link; one that cannot be read is logged and refused) into one queue, so nothing
polls: a round moves on the moment its last answer lands.

Artifacts are those of a real run, in `<workspace>/<job name>/`: `models/round-N.safetensors`,
`models/final.safetensors`, `metrics.json`, `logs/<site>.log` and `logs/server.log`, plus
`simulation.json` (status, error, sites, workers, wall time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import shutil
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from flctl.node.client import api_wire as wire
from flctl.node.client import compat
from flctl.node.config.privacy import PrivacyRules, ScopeRefused
from flctl.node.errors import NodeError
from flctl.node.jobs import checkpoints, metrics_file
from flctl.node.jobs.bundle import APP_FOLDER
from flctl.node.jobs.job_spec import LoadedJob, TransferSpec
from flctl.node.jobs.job_status import JobStatus
from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.process.links import LinkError
from flctl.node.secagg.payload import SecAggError
from flctl.node.simulator import worker_messages
from flctl.node.simulator.secure_sites import SimSecurity, sim_security
from flctl.node.simulator.worker import WorkerSpec
from flctl.node.simulator.worker import main as worker_main
from flctl.node.site import sandbox
from flctl.node.site.filters.base import FilterError
from flctl.node.site.filters.pipeline import FilterPipeline
from flctl.node.site.inference_release import declared_returns
from flctl.node.wire import quantize, tensors
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.state import (
    WorkflowState,
    read_state,
    report_path,
    state_path,
    write_report,
    write_state,
)

log = logging.getLogger("flctl.simulator")
MARKER = "simulation.json"
"""The file that marks a folder as a simulation's output (so a rerun may replace it)."""


class SimulationError(NodeError):
    """The simulation cannot run as asked (a bad site count, an output folder that is not ours…)."""


class Observer(Protocol):
    """What the simulation reports while it runs (the console renders it; this module never prints)."""

    def round_done(self, round_no: int, rounds: int, metrics: dict[str, dict[str, float]]) -> None: ...

    def site_answered(self, round_no: int, answered: int, asked: int) -> None:
        """`answered` of the `asked` sites of the task just sent have answered (or failed)."""
        ...

    def log(self, line: str) -> None: ...


@dataclass
class SimulationResult:
    """How a simulation ended and where its artifacts are."""

    job: str
    status: JobStatus  # FINISHED or FAILED
    error: str
    job_dir: Path
    sites: int
    workers: int
    rounds: int
    wall_s: float
    isolation: str = "none"

    engine: dict[str, Any] = field(default_factory=lambda: {"name": "local"})
    """The engine that ran the sites and its settings (`Engine.settings`): what `--resume` runs them with again."""

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "status": self.status, "error": self.error, "job_dir": str(self.job_dir),
                "sites": self.sites, "workers": self.workers, "rounds": self.rounds, "wall_s": round(self.wall_s, 3),
                "isolation": self.isolation, "engine": self.engine}


def default_workspace() -> Path:
    """Where simulations write by default: $FLCTL_SIM_WORKSPACE, else <data folder>/flctl/simulate ($XDG_DATA_HOME
    or ~/.local/share). `flctl simulate` and the Recipe's `SimEnv` share it."""
    env = os.environ.get("FLCTL_SIM_WORKSPACE")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "flctl" / "simulate"


def site_names(job: LoadedJob, count: int | None) -> list[str]:
    """The simulated sites: those job.yml names, else site-1..site-N."""
    if isinstance(job.spec.sites, list):
        if count is not None and count != len(job.spec.sites):
            raise SimulationError(f"job.yml names {len(job.spec.sites)} sites; drop -n or make it "
                                  f"{len(job.spec.sites)}")
        return list(job.spec.sites)
    if count is None:
        count = max(2, job.spec.min_sites)
    if count < job.spec.min_sites:
        raise SimulationError(f"the job needs at least {job.spec.min_sites} sites (min_sites); pass -n "
                              f"{job.spec.min_sites} or more")
    return [f"site-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class _WorkerGone:
    """A worker's pipe ended (the process died, or ended after `SimEnded`): not a message, what its reader saw."""

    index: int


_Event = tuple[worker_messages.FromWorker | _WorkerGone, bytes]
"""What lands in the pool's queue: a worker's message and its params (b"" for none), or a worker's end."""


class SitePool(Protocol):
    """What hosts the sites' scripts for `SimFederation`: `workers` hosts (numbered 0..workers-1, each site always
    sent to the same number), and one queue where their messages land. The local engine's are worker processes
    (`_Pool`); `ray_engine`'s are Ray actors. `lost` says why, when the pool lost every host (else "")."""

    events: queue.Queue[_Event]
    lost: str

    @property
    def workers(self) -> int: ...

    def send_task(self, index: int, task: worker_messages.SimTask, data: bytes) -> None: ...

    def stop(self, fed: SimFederation, grace_s: float) -> None:
        """End the job in every host, collect what they still send (through `fed.handle`), and release them."""
        ...


class Engine(Protocol):
    """How the sites run (`flctl simulate --engine`): the local engine's forked workers, or `ray_engine`'s."""

    def settings(self) -> dict[str, Any]:
        """The engine's name and settings, as simulation.json keeps them."""
        ...

    def isolation(self, available: sandbox.Isolation) -> sandbox.Isolation:
        """How the scripts will be confined, given what this machine offers."""
        ...

    def start(self, spec: WorkerSpec, sites: int) -> SitePool: ...


@dataclass
class LocalEngine:
    """`--engine local` (the default): `workers` worker processes on this machine (CPU cores, at most one per
    site)."""

    workers: int | None = None
    gpu_groups: tuple[str, ...] = ()
    """`flctl simulate --gpus`: the CUDA_VISIBLE_DEVICES of each worker in turn (`flctl.node.simulator.gpu_spread`);
    (): the workers' environment names no GPU."""

    def settings(self) -> dict[str, Any]:
        return {"name": "local", "workers": self.workers, **({"gpu_groups": list(self.gpu_groups)}
                                                              if self.gpu_groups else {})}

    def isolation(self, available: sandbox.Isolation) -> sandbox.Isolation:
        return sandbox.Isolation("none") if available.kind == "user" else available  # never switches user

    def start(self, spec: WorkerSpec, sites: int) -> SitePool:
        if self.gpu_groups:  # a worker per GPU group unless told more; sites spread over them in turn
            return _start_pool(max(1, min(self.workers or len(self.gpu_groups), sites)), spec, self.gpu_groups)
        return _start_pool(max(1, min(self.workers or os.cpu_count() or 1, sites)), spec)


@dataclass
class _Pool:
    """The worker processes, their pipes and the one queue their messages land in."""

    pipes: list[Connection]
    processes: list[Any]
    events: queue.Queue[_Event] = field(default_factory=queue.Queue)
    lost: str = ""

    @property
    def workers(self) -> int:
        return len(self.pipes)

    def send_task(self, index: int, task: worker_messages.SimTask, data: bytes) -> None:
        with contextlib.suppress(OSError):
            worker_messages.send(self.pipes[index], worker_messages.TO_WORKER, task, data)

    def stop(self, fed: SimFederation, grace_s: float) -> None:
        _stop_pool(self, fed, grace_s)

    def read(self, index: int) -> None:
        pipe = self.pipes[index]
        while True:
            try:
                message, payload = worker_messages.receive(pipe, worker_messages.FROM_WORKER)
            except LinkError as exc:
                worker_messages.FROM_WORKER.refuse(exc, log)
                continue
            except (EOFError, OSError):
                self.events.put((_WorkerGone(index), b""))
                return
            self.events.put((message, payload))
            if isinstance(message, worker_messages.SimEnded):
                return


class SimFederation:
    """`Federation` for a workflow whose sites are simulated by the worker pool."""

    def __init__(self, job_id: str, job_dir: Path, sites: list[str], pool: SitePool, observer: Observer | None,
                 rounds: int, filters: FilterPipeline | None = None, job_folder: Path | None = None,
                 secure: SimSecurity | None = None, transfer: TransferSpec | None = None) -> None:
        self.job_id = job_id
        self._secure = secure  # the simulated sites' secure-aggregation codecs (None: the job asks for none)
        self._job_folder = job_folder or job_dir
        self._filters = filters or FilterPipeline(job_id)
        self._dir = job_dir
        self.job_dir = job_dir
        self._sites = sites
        self._pool = pool
        self._observer = observer
        self._rounds = rounds
        self._worker_of = {site: i % pool.workers for i, site in enumerate(sites)}
        self._task_seq = 0
        self._failed: dict[str, str] = {}
        self._gone_workers: set[int] = set()
        self._posted: dict[int, _Posted] = {}  # task id -> a task `post` sent, not yet answered
        self._early: deque[tuple[worker_messages.SimResult, bytes]] = deque()  # posted tasks' answers `send` saw
        self.metrics: list[dict[str, Any]] = []
        self.server_log: list[str] = []
        self.ended_workers = 0
        self.transfer = transfer  # job.yml's `transfer:`: models arrive as quantized transfer leaves them
        self.keep_rounds: int | None = None  # job.yml's `checkpoints: {keep}`: None keeps every round's

    def sites(self) -> list[str]:
        return list(self._sites)

    def send(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        for answered, answer in enumerate(self._answers(task, sites, timeout_s), start=1):
            if self._observer is not None:
                self._observer.site_answered(task.round, answered, len(sites))
            yield answer

    def post(self, task: Task, site: str, timeout_s: float) -> str:
        """Send `task` to `site` alone and return at once; its answer comes from `next_answer`."""
        self._task_seq += 1
        task_id = self._task_seq
        if site in self._worker_of and site not in self._failed and self._worker_of[site] not in self._gone_workers:
            self._dispatch(task_id, task, tensors.encode(task.params), [site])
        self._posted[task_id] = _Posted(site, task, timeout_s, time.monotonic() + timeout_s)
        return str(task_id)

    def next_answer(self, timeout_s: float) -> tuple[str, TaskResult | SiteFailure] | None:
        """The next answer to a posted task (see `base.AsyncFederation`)."""
        deadline = time.monotonic() + timeout_s
        while self._posted:
            for task_id, posted in self._posted.items():
                reason = self._failed.get(posted.site) or (
                    "no such simulated site" if posted.site not in self._worker_of else
                    "its simulator worker process died" if self._worker_of[posted.site] in self._gone_workers else "")
                if reason:
                    del self._posted[task_id]
                    return str(task_id), SiteFailure(posted.site, reason)
            now = time.monotonic()
            late = min(self._posted, key=lambda tid: self._posted[tid].deadline)
            if self._posted[late].deadline <= now:
                posted = self._posted.pop(late)
                return str(late), SiteFailure(posted.site, f"no answer within {posted.timeout_s:g} s")
            message: worker_messages.FromWorker | _WorkerGone
            if self._early:
                message, data = self._early.popleft()
            elif deadline <= now:
                return None
            else:
                try:
                    message, data = self._pool.events.get(timeout=min(deadline, self._posted[late].deadline) - now)
                except queue.Empty:
                    continue
            if isinstance(message, worker_messages.SimResult):
                posted_task = self._posted.get(message.task_id)
                if posted_task is not None and posted_task.site == message.site:
                    del self._posted[message.task_id]
                    return str(message.task_id), self._sent_out(posted_task.task, message, data)
            elif isinstance(message, worker_messages.SimFailure):
                self._failed.setdefault(message.site, message.reason)
            elif isinstance(message, _WorkerGone):
                self._gone_workers.add(message.index)
                self.ended_workers += 1
            else:
                self.handle(message)
        return None

    def _dispatch(self, task_id: int, task: Task, payload: bytes, sites: Sequence[str]) -> None:
        """Hand the task to the workers of `sites` (through each site's task filters)."""
        by_worker: dict[int, list[str]] = {}
        for site in sites:
            if site in self._failed:
                continue
            if site in self._worker_of:
                by_worker.setdefault(self._worker_of[site], []).append(site)
        for index, group in sorted(by_worker.items()):
            if index not in self._gone_workers:
                for given, data, members in self._given(task, payload, group):
                    assigned = worker_messages.SimTask(task_id=task_id, task_kind=given.kind, round=given.round,
                                                       meta=given.meta, sites=members, size=len(data))
                    self._pool.send_task(index, assigned, data)

    def _answers(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        self._task_seq += 1
        task_id = self._task_seq
        if task.params and self._quantizes(task):
            try:
                task = replace(task, params=quantize.round_trip(task.params, *self._quantized_as()))
            except ValueError as exc:  # as at the server: the model cannot travel so
                raise WorkflowError(f"job.yml transfer: {{quantize: {self._quantized_as()[0]}}}: {exc}") from None
        payload = tensors.encode(task.params)
        if task.kind == TaskKind.SECURE and self._secure is not None:  # answered here, never by a worker
            yield from self._secure.steps(task, payload, [s for s in sites if s not in self._failed])
            yield from (SiteFailure(s, self._failed[s]) for s in sites if s in self._failed)
            return
        waiting = set(sites)
        self._dispatch(task_id, task, payload, sites)
        deadline = time.monotonic() + timeout_s
        for site in sorted(waiting):
            reason = self._failed.get(site) or (None if site in self._worker_of else "no such simulated site")
            if reason is not None:
                waiting.discard(site)
                yield SiteFailure(site, reason)
            elif self._worker_of[site] in self._gone_workers:
                waiting.discard(site)
                yield SiteFailure(site, "its simulator worker process died")
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message, data = self._pool.events.get(timeout=left)
            except queue.Empty:
                return
            if isinstance(message, worker_messages.SimResult):
                if message.task_id != task_id or message.site not in waiting:
                    if message.task_id in self._posted:
                        self._early.append((message, data))
                    continue
                waiting.discard(message.site)
                yield self._sent_out(task, message, data)
            elif isinstance(message, worker_messages.SimFailure):
                self._failed.setdefault(message.site, message.reason)
                if message.task_id == task_id and message.site in waiting:
                    waiting.discard(message.site)
                    yield SiteFailure(message.site, message.reason)
            elif isinstance(message, _WorkerGone):
                self._gone_workers.add(message.index)
                self.ended_workers += 1
                for site in sorted(s for s in waiting if self._worker_of.get(s) == message.index):
                    waiting.discard(site)
                    self._failed[site] = "its simulator worker process died"
                    yield SiteFailure(site, self._failed[site])
            else:
                self.handle(message)

    # The sites' privacy filters run here, in the main process, where no script runs: the scripts share their
    # worker processes with other sites' scripts, and one could patch the code of its own process, never this one.
    def _given(self, task: Task, payload: bytes, group: list[str]) -> list[tuple[Task, bytes, list[str]]]:
        """The task as the sites of `group` are given it, through their task filters: one message for the whole
        group when there are none, else one per site; a site whose filter fails is failed, and gets nothing."""
        if not self._filters.task_filters and self._secure is None:
            for site in group:  # a filter of the update needs the model the task brought (no copy: one dict)
                self._filters.keep_received(site, task.params)
            return [(task, payload, group)]
        given: list[tuple[Task, bytes, list[str]]] = []
        for site in group:
            try:
                brought, data = self._secure.task_in(task, payload, site) if self._secure else (task, payload)
                filtered, data = self._filters.task_in(brought, data, site)
            except (FilterError, SecAggError) as exc:
                self._failed.setdefault(site, str(exc))
                continue
            given.append((filtered, data, [site]))
        return given

    def _sent_out(self, task: Task, message: worker_messages.SimResult, data: bytes) -> TaskResult | SiteFailure:
        """A site's answer as the site sends it out, through its result filters (a filter that fails fails it)."""
        answer = wire.Result(message.task_id, message.num_examples, dict(message.metrics), dict(message.meta))
        try:
            answer, data = self._filters.result_out(task, answer, data, message.site)
            if self._secure is not None:  # after the filters, as at a real site
                answer, data = self._secure.result_out(task, answer, data, message.site)
        except (FilterError, SecAggError) as exc:
            self._failed.setdefault(message.site, str(exc))
            return SiteFailure(message.site, str(exc))
        params = tensors.decode(data)
        if self._quantizes(task):  # what the site's job process would send, as the server would read it
            try:
                params = quantize.round_trip(params, *self._quantized_as())
            except ValueError as exc:
                self._failed.setdefault(message.site, f"job.yml transfer: {exc}")
                return SiteFailure(message.site, self._failed[message.site])
        return TaskResult(message.site, params, answer.num_examples, answer.metrics, answer.meta)

    def _quantizes(self, task: Task) -> bool:
        """Whether `task`'s model (and its answers) travel quantized: job.yml's `transfer:` asks, and it is a model."""
        return self.transfer is not None and self.transfer.quantize is not None \
            and task.kind in quantize.QUANTIZED_KINDS

    def _quantized_as(self) -> tuple[str, int]:
        assert self.transfer is not None and self.transfer.quantize is not None
        return self.transfer.quantize, self.transfer.block_size

    def handle(self, message: worker_messages.FromWorker | _WorkerGone) -> None:
        """A message that is not an answer: a logged metric, or a worker's end."""
        if isinstance(message, worker_messages.SimMetric):
            returns = self._filters.inference_returns
            if returns and message.name not in returns:  # an inference job's: only what it declares leaves a site
                return
            self.metrics.append({"site": message.site, "round": message.round, "name": message.name,
                                 "value": message.value, "step": message.step})
        elif isinstance(message, worker_messages.SimEnded | _WorkerGone):
            self.ended_workers += 1

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        _write_atomic(self._dir / "models" / f"{name}.safetensors", tensors.encode(params))
        if checkpoints.round_of(name) is not None:
            checkpoints.prune(self._dir, self.keep_rounds)

    def load_model(self, name: str) -> Params:
        return tensors.map_file(self._dir / "models" / f"{name}.safetensors")

    def job_file(self, path: str) -> bytes:
        from flctl.node.jobs.bundle import inner_path

        return (self._job_folder / inner_path(path)).read_bytes()

    def kit_file(self, name: str) -> bytes:
        if self._secure is not None:
            return self._secure.kit_file(name)
        raise FileNotFoundError(f"a simulation has no kits, so no startup/{name}: run the job on a provisioned "
                                "federation (flctl poc prepare, or a real one)")

    def save_report(self, name: str, report: dict[str, Any]) -> None:
        write_report(report_path(self._dir, name), report)

    def save_state(self, name: str, state: WorkflowState) -> None:
        write_state(state_path(self._dir, name), state)

    def record_round(self, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        """The round's metrics; a value a site already logged in the round (`fl.log`: its SimMetric came through the
        same queue before the site's answer) is not recorded twice."""
        logged = {(m["site"], m["name"], m["value"]) for m in self.metrics if m["round"] == round_no}
        for site, values in metrics.items():
            for name, value in values.items():
                if (site, name, float(value)) in logged:
                    continue
                self.metrics.append({"site": site, "round": round_no, "name": name, "value": float(value),
                                     "step": None})
        if self._observer is not None:
            self._observer.round_done(round_no, self._rounds, metrics)

    def log(self, message: str) -> None:
        self.server_log.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}")
        if self._observer is not None:
            self._observer.log(message)


@dataclass(frozen=True)
class _Posted:
    """A task `SimFederation.post` sent to one site, open until it is answered, fails or times out."""

    site: str
    task: Task  # its site's result filters see it
    timeout_s: float
    deadline: float  # time.monotonic() when it times out


def simulate(job: LoadedJob, sites: list[str], workspace: Path, workers: int | None = None,
             observer: Observer | None = None, data_paths: Sequence[str] = (),
             privacy: PrivacyRules | None = None, engine: Engine | None = None,
             resume: bool = False) -> SimulationResult:
    """Run `job` with `sites` simulated by `engine` (None: `LocalEngine(workers)`, K worker processes); write its
    artifacts under `workspace`. With `resume`, continue the run in `workspace/<job name>` from its last round's
    checkpoint (`flctl simulate --resume`) instead of starting afresh.

    Every site applies `privacy` (a site's local/privacy.yml; None: the defaults, one scope without filters) for the
    job's privacy_scope; SimulationError when they do not have that scope.

    The scripts run confined as `sandbox.available()` allows (Landlock), reading only their app folder, the Python
    installation and `data_paths`, with a minimal environment."""
    started = time.monotonic()
    engine = engine or LocalEngine(workers)
    workspace = workspace.resolve()  # the workers change into the app folder: a relative path would move
    script = _simulated_script(job)
    job_id = uuid.uuid4().hex[:12]
    try:
        filters = replace((privacy or PrivacyRules()).pipeline(job_id, job.spec.privacy_scope),
                          inference_returns=declared_returns(job.args))
    except ScopeRefused as exc:
        raise SimulationError(f"the simulated sites refuse the job: {exc}") from None
    job_dir = workspace / job.spec.name
    start_round, restart = (_resumed(job_dir) if resume else (0, None))
    if not resume:
        _fresh_job_dir(workspace, job.spec.name, job)
    app_dir = job_dir / APP_FOLDER
    (job_dir / "tmp").mkdir(exist_ok=True)
    isolation = engine.isolation(sandbox.available())
    (job_dir / "sites").mkdir(exist_ok=True)  # each site's fl.output_dir(): what stays at the site
    spec = WorkerSpec(job_id, app_dir, script, job.spec.app.command[2:],
                      {**job.spec.app.env, wire.FRAMEWORK_ENV: job.spec.app.params_framework(),
                       wire.OUTPUT_DIR_ENV: str(job_dir / "sites" / "{site}" / "outputs")}, job_dir / "logs",
                      job_dir / "tmp", isolation, tuple(str(Path(p).resolve()) for p in data_paths),
                      job.spec.app.compat, job_dir / "sites")
    workflow = job.create_workflow()
    rounds = int(getattr(job.args, "rounds", 0) or 0)
    running = SimulationResult(job.spec.name, JobStatus.RUNNING, "", job_dir, len(sites), 0, rounds, 0.0,
                               isolation.describe(), engine.settings())
    (job_dir / MARKER).write_text(json.dumps(running.as_dict(), indent=1) + "\n")  # what --resume runs again
    try:
        pool = engine.start(spec, len(sites))
    except BaseException:  # no run: nothing of it stays (a resumed run's results stay as they were)
        if not resume:
            shutil.rmtree(job_dir, ignore_errors=True)
        raise
    fed = SimFederation(job_id, job_dir, sites, pool, observer, rounds, filters, job.folder,
                        _secure_sites(job, job_id, sites, job_dir), job.spec.transfer)
    fed.keep_rounds = job.spec.checkpoints.keep
    if restart is not None:
        fed.metrics = [m for m in _read_metrics(job_dir) if m["round"] < start_round]
    fed.log(f"isolation: {isolation.describe()}")
    if job.spec.app.compat:
        fed.log(f"compat {job.spec.app.compat}: {compat.installed_note(job.spec.app.compat)}")
    try:
        status, error = _run(job, workflow, fed, restart, start_round, isolation)
    except BaseException:  # Ctrl-C: do not wait for the scripts, stop the workers now
        pool.stop(fed, grace_s=0.0)
        raise
    pool.stop(fed, 40.0)
    if status == JobStatus.FAILED and pool.lost:
        kept = _last_checkpoint(job_dir)
        error = (f"{pool.lost} ({error}); " + (f"models/{kept.name} is kept: flctl simulate --resume {job_dir} "
                                                "continues from it" if kept else "no round was checkpointed"))
    _write_results(job, job_id, fed, sites, status, error)
    result = SimulationResult(job.spec.name, status, error, job_dir, len(sites), pool.workers, rounds,
                              time.monotonic() - started, isolation.describe(), engine.settings())
    (job_dir / MARKER).write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    return result


def _simulated_script(job: LoadedJob) -> str:
    """The script the simulated sites run; SimulationError when the job is not one a simulation can run."""
    script = job.spec.app.script()
    if job.spec.app.external:
        raise SimulationError(f"{job.spec_path} says app: {{external: true}}: its trainers attach to the sites of a "
                              "federation (flctl poc, or a provisioned one), which the simulator has none of")
    if script is None:
        raise SimulationError(f"the simulator runs Python scripts only; make app.command in "
                              f"{job.spec_path} [python, SCRIPT, ...]")
    if job.spec.initial_model and job.spec.initial_model.startswith("job:"):
        raise SimulationError(f"{job.spec_path}: initial_model: {job.spec.initial_model} names a finished job on a "
                              "server, and a simulation has none: download it (flctl job download ID) and name its "
                              "models/final.safetensors, copied into the job")
    return script


def _write_results(job: LoadedJob, job_id: str, fed: SimFederation, sites: list[str], status: JobStatus,
                   error: str) -> None:
    """The run's server log (added to a resumed run's), metrics.json and the metrics' exports; tmp/ removed."""
    job_dir = fed.job_dir
    fed.log(f"job {status.lower()}" + (f": {error}" if error else ""))
    _export_metrics(job, job_id, job_dir, sites, fed.metrics, status, fed.log)
    with (job_dir / "logs" / "server.log").open("a") as out:
        out.write("\n".join(fed.server_log) + "\n")
    (job_dir / "metrics.json").write_text(metrics_file.dumps(fed.metrics))
    shutil.rmtree(job_dir / "tmp", ignore_errors=True)


def _run(job: LoadedJob, workflow: Any, fed: SimFederation, restart: Path | None, start_round: int,
         isolation: sandbox.Isolation) -> tuple[JobStatus, str]:
    """Run the workflow, from the job's initial model or (resuming) from the checkpoint `restart`; how it ended."""
    try:
        initial: Params | None
        if restart is not None:
            fed.log(f"resuming at round {start_round + 1} from models/{restart.name}")
            if state_path(fed.job_dir, restart.stem).is_file():
                workflow.restore(read_state(state_path(fed.job_dir, restart.stem)))
            initial = tensors.read_file(restart)
        else:
            initial = _initial_model(job, fed, fed.job_dir / APP_FOLDER, fed.job_dir / "tmp" / "initial-model",
                                     isolation)
        workflow.run(fed, initial, start_round)
    except WorkflowError as exc:
        fed.log(f"workflow failed: {exc}")
        return JobStatus.FAILED, str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in a workflow fails the job, with its traceback in the log
        import traceback

        for line in traceback.format_exc().splitlines():
            fed.log(line)
        return JobStatus.FAILED, f"the workflow crashed: {type(exc).__name__}: {exc}"
    return JobStatus.FINISHED, ""


def _last_checkpoint(job_dir: Path) -> Path | None:
    """models/round-N.safetensors of the last round saved, or None."""
    last = checkpoints.last_round(job_dir)
    return None if last is None else job_dir / "models" / f"round-{last}.safetensors"


def _resumed(job_dir: Path) -> tuple[int, Path | None]:
    """Where a resumed run starts: the round after the last one checkpointed, and that checkpoint (None, round 0:
    none was)."""
    if not (job_dir / MARKER).is_file():
        raise SimulationError(f"{job_dir} is not a simulation's output (no {MARKER}); --resume takes the folder a "
                              "run printed its results in")
    last = _last_checkpoint(job_dir)
    return (int(last.stem.split("-")[1]) + 1, last) if last is not None else (0, None)


def _read_metrics(job_dir: Path) -> list[dict[str, Any]]:
    try:
        metrics = metrics_file.loads((job_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return []
    return [m for m in metrics if isinstance(m, dict) and isinstance(m.get("round"), int)]


def _export_metrics(job: LoadedJob, job_id: str, job_dir: Path, sites: list[str], metrics: list[dict[str, Any]],
                    status: str, log: Callable[[str], None]) -> None:
    """The run's metrics where job.yml's `metrics:` sends them (TensorBoard runs in `tb/` by default, MLflow, W&B),
    as the server's exporters do; a failure is a line in the server log, never the run's."""
    if not job.spec.metrics.exporters():
        return
    from flctl.node.server.metrics_export.base import JobContext, MetricPoint
    from flctl.node.server.metrics_export.guard import export_all

    now = time.time()
    points = [MetricPoint(m["site"], m["round"], m["name"], m["value"], m["step"], now) for m in metrics]
    context = JobContext(job_id, job.spec.name, job_dir, sites, job.spec.workflow.type, dict(job.spec.workflow.args))
    export_all(job.spec.metrics, context, points, status, log, f"{job_dir / 'metrics.json'}")


def _initial_model(job: LoadedJob, fed: SimFederation, app_dir: Path, work: Path,
                   isolation: sandbox.Isolation) -> Params | None:
    """job.yml's initial model, None without one: a file of the job, or the app's function called in a child process
    confined as the scripts are (never in this process)."""
    if not job.spec.initial_model:
        return None
    from flctl.node.jobs import initial_model

    params = initial_model.load(job.spec.initial_model, fed.job_file,
                                lambda ref: initial_model.build(ref, app_dir, work, isolation))
    fed.log(f"initial model from {job.spec.initial_model}: {len(params)} tensors")
    return params


def _secure_sites(job: LoadedJob, job_id: str, sites: list[str], job_dir: Path) -> SimSecurity | None:
    """The simulated sites' secure aggregation, when the job asks for it (see `secure_sites`)."""
    from flctl.node.workflows.secure_sum import secure_mode_of

    mode = secure_mode_of(job.args)
    return sim_security(mode, job_id, sites, job_dir) if mode != "none" else None


def _fresh_job_dir(workspace: Path, name: str, job: LoadedJob) -> Path:
    """workspace/<name>, emptied, with the job's app/ and job.yml (so that `--resume` finds the job there), logs/."""
    job_dir = workspace / name
    if job_dir.exists():
        if not (job_dir / MARKER).is_file():
            raise SimulationError(f"{job_dir} exists and is not a simulation's output; pass another "
                                  "workspace with -w")
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)
    shutil.copytree(job.folder / APP_FOLDER, job_dir / APP_FOLDER, symlinks=False)
    shutil.copyfile(job.spec_path, job_dir / "job.yml")
    model = job.spec.initial_model
    if model and (job.folder / model).is_file():  # a model file of the job: the copy must load as the job does
        (job_dir / model).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job.folder / model, job_dir / model)
    (job_dir / "logs").mkdir()
    return job_dir


def _start_pool(count: int, spec: WorkerSpec, gpu_groups: tuple[str, ...] = ()) -> _Pool:
    """Start `count` workers, spawned (a fresh interpreter: a forked one would hold this process's memory, its
    environment included) with the scripts' minimal environment (`sandbox.script_env`); worker i sees only the GPUs
    of `gpu_groups[i % len]` (CUDA_VISIBLE_DEVICES), when given."""
    context: Any = multiprocessing.get_context("spawn")
    env = sandbox.script_env(os.environ, job_env=spec.env, allow=(), home=spec.app_dir, tmp=spec.tmp_dir)
    pipes, processes = [], []
    for index in range(count):
        gpus = {"CUDA_VISIBLE_DEVICES": gpu_groups[index % len(gpu_groups)],
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID"} if gpu_groups else {}
        with _environment({**env, **gpus}), _main_not_run():
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, spec), name=f"flctl-sim-worker-{index}")
            process.start()
            theirs.close()
            pipes.append(ours)
            processes.append(process)
    pool = _Pool(pipes, processes)
    for index in range(count):
        threading.Thread(target=pool.read, args=(index,), name=f"flctl-sim-reader-{index}", daemon=True).start()
    return pool


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """This process's environment is `env` while in the block (a spawned process inherits it), then what it was.
    multiprocessing's spawn takes no environment of its own; other threads of this process see `env` meanwhile."""
    with _ENV_LOCK:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


@contextlib.contextmanager
def _main_not_run() -> Iterator[None]:
    """While workers are spawned, this process's main module names no file and no module, so that a spawned worker
    does not run it again: multiprocessing would, and a Recipe script (or notebook) that calls `SimEnv` without an
    `if __name__ == "__main__":` guard would start its simulation again in every worker (the flctl command's own
    main would import the CLI there). The workers need nothing of it: their target is `worker.main`."""
    main = sys.modules.get("__main__")
    names = ("__file__", "__spec__")
    saved = {name: main.__dict__[name] for name in names if main is not None and name in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


def _stop_pool(pool: _Pool, fed: SimFederation, grace_s: float = 40.0) -> None:
    """End the job in every worker, collect what they still send, and reap them."""
    for pipe in pool.pipes:
        with contextlib.suppress(OSError):
            worker_messages.send(pipe, worker_messages.TO_WORKER, worker_messages.SimEnd())
    deadline = time.monotonic() + grace_s
    while fed.ended_workers < len(pool.pipes):
        try:
            fed.handle(pool.events.get(timeout=max(0.0, deadline - time.monotonic()))[0])
        except queue.Empty:
            break
    for process in pool.processes:
        process.join(max(0.0, deadline - time.monotonic()) if grace_s else 0.0)
        if process.is_alive():
            process.kill()
            process.join()
    for pipe in pool.pipes:
        pipe.close()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

