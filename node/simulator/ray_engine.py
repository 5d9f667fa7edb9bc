"""`flctl simulate --engine ray`: the simulated sites on a Ray cluster (or a local Ray), the workflow in this process.

The sites are hosted as the local engine's worker processes host them (`worker.Worker`, the job's unchanged
script in a thread per site, `site_thread`), but inside Ray actors: one actor per `--site-cpus`/`--site-gpus`
share of the cluster (as many as its resources allow, at most one per site), each hosting its share of the sites.
The simulation's `SimFederation` sees `workers` numbered hosts, as with local workers.

What travels: a task's params once per task, as safetensors bytes put in Ray's object store (each actor reads the
same object); the answers' params come back as safetensors bytes, the messages as the simulator worker link's
JSON (`worker_messages`), never pickled objects of the job's own. The app folder goes to the actors as a tar in the
object store, so an actor on another node unpacks it there; each actor keeps its sites' logs on its node and
hands them back at the end (those of an actor that died are lost with it).

When an actor dies (its node went away, or its process was killed), the sites it hosted move to the actors that
are left and the tasks they had not answered are sent again (their scripts start afresh there: module state of
a script is lost with its node, as it would be with a real site's process). When no actor is left, every site
fails ("the Ray cluster lost every actor..."): the workflow fails with the last round's checkpoint on disk.

Ray is an optional extra (`pip install "flctl[ray]"`): this module imports it only inside `RayEngine.start`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import queue
import shutil
import signal
import socket
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flctl.node.process.links import LinkError
from flctl.node.simulator import worker_messages
from flctl.node.simulator.runtime import SimulationError, _Event, _WorkerGone
from flctl.node.simulator.worker import WorkerSpec
from flctl.node.site import sandbox

if TYPE_CHECKING:
    from flctl.node.simulator.runtime import SimFederation

log = logging.getLogger("flctl.simulator")
INSTALL_HINT = 'the ray engine needs Ray: pip install "flctl[ray]" (or bash scripts/setup.sh --all)'
OBJECT_STORE_ENV = "FLCTL_RAY_OBJECT_STORE_MB"
"""The local Ray instance's object store, in MiB, when set (Ray's default: 30% of the memory)."""
_DRAIN_WAIT_S = 1.0
"""How long an actor holds a `drain` call open when it has nothing to send (the reader then asks again)."""
_BATCH = 512
"""Messages at most in one `drain` answer."""


def ray_missing() -> str:
    """INSTALL_HINT when Ray cannot be imported here, else ""."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return ""


class RayUnreachable(SimulationError):
    """`--address` names no Ray cluster that answers."""


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """RayUnreachable unless HOST:PORT takes a TCP connection (Ray itself would retry for minutes); "auto" and
    ray:// addresses are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayUnreachable(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one (ray start "
                             "--head) or pass the head's HOST:PORT") from None


@dataclass
class RayEngine:
    """`--engine ray [--address A] [--site-cpus C] [--site-gpus G]`: sites in Ray actors of C CPUs and G GPUs each.

    Without `address`, a local Ray instance is started (with `num_cpus`, default this machine's cores, and
    `object_store_mb` of object store, default $FLCTL_RAY_OBJECT_STORE_MB, else Ray's) and stopped at the end."""

    address: str | None = None
    site_cpus: float = 1.0
    site_gpus: float = 0.0
    num_cpus: int | None = None
    object_store_mb: int | None = None

    def settings(self) -> dict[str, Any]:
        return {"name": "ray", "address": self.address, "site_cpus": self.site_cpus, "site_gpus": self.site_gpus}

    def isolation(self, available: sandbox.Isolation) -> sandbox.Isolation:
        # Ray's worker processes are Ray's: Landlock there would cut them off from Ray's own files and sockets.
        return sandbox.Isolation("none")

    def start(self, spec: WorkerSpec, sites: int) -> RayPool:
        hint = ray_missing()
        if hint:
            raise SimulationError(hint)
        if self.site_cpus < 0 or self.site_gpus < 0 or (self.site_cpus == 0 and self.site_gpus == 0):
            raise SimulationError("--site-cpus and --site-gpus are at least 0, and one of them more than 0")
        return RayPool(self, spec, sites)


@dataclass
class _Pending:
    """A task a host was sent and not every one of its sites has answered: sent again if the host dies."""

    task: worker_messages.SimTask
    data: Any  # the ObjectRef of its params
    sites: set[str]


@dataclass
class RayPool:
    """The Ray actors hosting the sites: a `runtime.SitePool`."""

    engine: RayEngine
    spec: WorkerSpec
    sites: int
    events: queue.Queue[_Event] = field(default_factory=queue.Queue)
    lost: str = ""
    notes: list[str] = field(default_factory=list)
    _actors: list[Any] = field(default_factory=list)
    _alive: list[bool] = field(default_factory=list)
    _host_of: list[int] = field(default_factory=list)  # numbered host (what SimFederation sends to) -> actor
    _pending: dict[int, dict[int, _Pending]] = field(default_factory=dict)  # numbered host -> task id -> pending
    _host_of_site: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _readers: list[threading.Thread] = field(default_factory=list)
    _started_here: bool = False
    _last_put: tuple[bytes, Any] | None = None

    def __post_init__(self) -> None:
        import ray

        engine = self.engine
        handlers = _signal_handlers()
        if not ray.is_initialized():
            if engine.address:
                _reachable(engine.address)
                try:
                    ray.init(address=engine.address, log_to_driver=False, logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise SimulationError(f"cannot connect to the Ray cluster at {engine.address}: {exc}") from None
            else:
                store_mb = engine.object_store_mb or int(os.environ.get(OBJECT_STORE_ENV, "0") or 0)
                store = store_mb * 1024 * 1024 if store_mb > 0 else None
                # "local": a Ray of our own, never one `ray start` left running on this machine
                ray.init(address="local", num_cpus=engine.num_cpus or os.cpu_count() or 1, object_store_memory=store,
                         include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
                self._started_here = True
        _restore(handlers)  # Ray's driver takes SIGTERM (and dies on it, leaving its Ray behind): give it back
        try:
            count = self._host_count(ray.cluster_resources())  # type: ignore[no-untyped-call]
            app = ray.put(_tar(self.spec.app_dir))
            host = ray.remote(_SiteHost).options(num_cpus=engine.site_cpus, num_gpus=engine.site_gpus,
                                                 max_concurrency=4, max_restarts=0, max_task_retries=0)
            self._actors = [host.remote(self.spec, app) for _ in range(count)]
            self._alive = [True] * count
            self._host_of = list(range(count))
            self._pending = {index: {} for index in range(count)}
            for index in range(count):
                reader = threading.Thread(target=self._read, args=(index,), name=f"flctl-ray-reader-{index}",
                                          daemon=True)
                reader.start()
                self._readers.append(reader)
        except BaseException:
            self._shutdown()
            raise

    def _host_count(self, resources: dict[str, float]) -> int:
        """As many actors as the cluster's CPUs (and GPUs) allow for a site's share, at most one per site."""
        engine = self.engine
        fits = [self.sites]
        if engine.site_cpus > 0:
            fits.append(math.floor(resources.get("CPU", 0) / engine.site_cpus + 1e-9))
        if engine.site_gpus > 0:
            fits.append(math.floor(resources.get("GPU", 0) / engine.site_gpus + 1e-9))
        if min(fits) < 1:
            raise SimulationError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and "
                                  f"{resources.get('GPU', 0):g} GPUs: not enough for one site of "
                                  f"--site-cpus {engine.site_cpus:g} --site-gpus {engine.site_gpus:g}")
        return min(fits)

    @property
    def workers(self) -> int:
        return len(self._host_of)

    def send_task(self, index: int, task: worker_messages.SimTask, data: bytes) -> None:
        import ray

        if self._last_put is None or self._last_put[0] is not data:  # one object per task, not per host
            self._last_put = (data, ray.put(data))
        ref = self._last_put[1]
        with self._lock:
            for site in task.sites:
                self._host_of_site[site] = index
            self._pending[index][task.task_id] = _Pending(task, ref, set(task.sites))
            actor = self._actors[self._host_of[index]]
        actor.assign.remote(worker_messages.TO_WORKER.encode(task), ref)

    def _read(self, actor_index: int) -> None:
        """Carry one actor's messages into the queue until it has ended or died."""
        import ray

        actor = self._actors[actor_index]
        while True:
            try:
                batch = ray.get(actor.drain.remote(_DRAIN_WAIT_S))
            except ray.exceptions.RayActorError as exc:
                self._died(actor_index, exc)
                return
            except (ray.exceptions.RaySystemError, ConnectionError) as exc:
                self._died(actor_index, exc)
                return
            for raw, payload in batch:
                try:
                    message = worker_messages.FROM_WORKER.decode(raw)
                except LinkError as exc:
                    worker_messages.FROM_WORKER.refuse(exc, log)
                    continue
                if isinstance(message, worker_messages.SimResult | worker_messages.SimFailure):
                    self._answered(message.site, message.task_id)
                self.events.put((message, payload))
                if isinstance(message, worker_messages.SimEnded):
                    return

    def _answered(self, site: str, task_id: int) -> None:
        with self._lock:
            index = self._host_of_site.get(site)
            pending = self._pending[index].get(task_id) if index is not None else None
            if pending is not None:
                pending.sites.discard(site)
                if not pending.sites:
                    del self._pending[index][task_id]  # type: ignore[index]

    def _died(self, actor_index: int, exc: BaseException) -> None:
        """An actor is gone: move its sites to the actors left and send their unanswered tasks again."""
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with self._lock:
            if not self._alive[actor_index]:
                return
            self._alive[actor_index] = False
            left = [i for i, alive in enumerate(self._alive) if alive]
            moved = [index for index, actor in enumerate(self._host_of) if actor == actor_index]
            if not left:
                self.lost = f"the Ray cluster lost every actor hosting sites ({len(self._actors)}; the last: {why})"
                self.notes.append(self.lost)
                for index in range(len(self._host_of)):
                    self.events.put((_WorkerGone(index), b""))
                return
            resend: list[tuple[int, _Pending]] = []
            for index in moved:
                self._host_of[index] = left[index % len(left)]
                resend.extend((self._host_of[index], p) for p in self._pending[index].values())
        targets = sorted({self._host_of[index] for index in moved})
        again = sum(len(p.sites) for _, p in resend)
        note = (f"Ray actor {actor_index} died ({why}): its sites moved to actor(s) {targets}, {again} unanswered "
                "site task(s) sent again")
        self.notes.append(note)
        log.warning(note)
        for target, pending in resend:
            task = pending.task.model_copy(update={"sites": sorted(pending.sites)})
            self._actors[target].assign.remote(worker_messages.TO_WORKER.encode(task), pending.data)

    def stop(self, fed: SimFederation, grace_s: float) -> None:
        """End the job in every actor still there, write the site logs they hand back, release the actors (and
        the local Ray instance, when started here)."""
        import ray

        try:
            if grace_s > 0:
                live = [(i, a) for i, a in enumerate(self._actors) if self._alive[i]]
                refs = [actor.end.remote() for _, actor in live]
                deadline = time.monotonic() + grace_s
                for index, _ in live:
                    self._readers[index].join(max(0.0, deadline - time.monotonic()))
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=max(0.0, deadline - time.monotonic()))
                for ref in ready:
                    with contextlib.suppress(ray.exceptions.RayError):
                        _append_logs(self.spec.log_dir, ray.get(ref))
                while True:
                    try:
                        fed.handle(self.events.get_nowait()[0])
                    except queue.Empty:
                        break
            for note in self.notes:
                fed.log(note)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        import ray

        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if ray.is_initialized():
            ray.shutdown()  # stops the local Ray instance when started here; else only disconnects


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _signal_handlers() -> dict[int, Any]:
    """This process's Python signal handlers (in the main thread only: elsewhere none can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in _SIGNALS}


def _restore(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _tar(folder: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(folder, arcname=".")
    return out.getvalue()


def _append_logs(log_dir: Path, logs: dict[str, str]) -> None:
    for site, text in logs.items():
        with (log_dir / f"{site}.log").open("a", encoding="utf-8") as out:
            out.write(text)


class _SiteHost:
    """A Ray actor hosting sites as a worker process does (`worker.Worker`), in a folder of its own on its node."""

    def __init__(self, spec: WorkerSpec, app: bytes) -> None:
        from flctl.node.simulator.worker import Worker, host_sites

        self._root = Path(tempfile.mkdtemp(prefix="flctl-ray-sites-"))
        app_dir, logs, tmp = self._root / "app", self._root / "logs", self._root / "tmp"
        for folder in (app_dir, logs, tmp):
            folder.mkdir()
        with tarfile.open(fileobj=io.BytesIO(app), mode="r") as tar:
            tar.extractall(app_dir, filter="data")
        local = dataclasses.replace(spec, app_dir=app_dir, log_dir=logs, tmp_dir=tmp)
        # The scripts' minimal environment (as a local worker's), keeping what Ray's own worker reads (RAY_*).
        env = sandbox.script_env(os.environ, job_env=spec.env, allow=(), home=app_dir, tmp=tmp)
        ray_env = {name: value for name, value in os.environ.items() if name.startswith("RAY_")}
        os.environ.clear()
        os.environ.update({**ray_env, **env})
        self._logs = host_sites(local)
        self._out: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
        self._worker = Worker(self._put, local, self._logs)

    def _put(self, message: worker_messages.FromWorker, payload: bytes) -> None:
        self._out.put((worker_messages.FROM_WORKER.encode(message), payload))

    def assign(self, task: bytes, payload: bytes) -> None:
        message = worker_messages.TO_WORKER.decode(task)
        if isinstance(message, worker_messages.SimTask):
            self._worker.assign(message, payload)

    def drain(self, wait_s: float) -> list[tuple[bytes, bytes]]:
        """The messages waiting (at least one, unless `wait_s` passes first)."""
        try:
            batch = [self._out.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while len(batch) < _BATCH:
            try:
                batch.append(self._out.get_nowait())
            except queue.Empty:
                break
        return batch

    def end(self) -> dict[str, str]:
        """The job has ended: let the scripts return, and hand back their sites' logs."""
        self._worker.end()
        self._logs.close()
        logs = {path.stem: path.read_text(encoding="utf-8", errors="replace")
                for path in (self._root / "logs").glob("*.log")}
        shutil.rmtree(self._root, ignore_errors=True)
        return logs
