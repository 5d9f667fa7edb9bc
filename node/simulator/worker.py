"""A simulator worker process: hosts many simulated sites, each running the job's script in a thread.

The worker reads tasks from the simulation's main process and hands each to its sites' scripts;
answers, failures and logged metrics go back as soon as they happen (no polling anywhere).
The messages on the pipe are typed in `worker_messages` (the simulator worker link); one that cannot
be read is logged and refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

from flctl.node.client import api_wire as wire
from flctl.node.client import compat, legacy
from flctl.node.process.links import LinkError
from flctl.node.simulator.site_thread import ThreadConnection, current_site, frame_for_task, run_script
from flctl.node.simulator.worker_messages import (
    FROM_WORKER,
    TO_WORKER,
    FromWorker,
    SimEnd,
    SimEnded,
    SimFailure,
    SimMetric,
    SimResult,
    SimTask,
    ToWorker,
    receive,
    send,
)
from flctl.node.site import sandbox

log = logging.getLogger("flctl.simulator")
_END_GRACE_S = 30.0
"""How long the worker waits for its scripts to return once the job has ended."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to run its sites' scripts."""

    job_id: str
    app_dir: Path
    script: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    tmp_dir: Path
    isolation: sandbox.Isolation
    data_paths: tuple[str, ...] = ()
    compat: str | None = None
    """job.yml's app.compat: that framework's Client API goes first on the scripts' path."""
    sites_dir: Path | None = None
    """`<job>/sites/`: each simulated site's own folder (`fl.output_dir()` is `sites/<site>/outputs/`), writable."""


def worker_grants(spec: WorkerSpec) -> sandbox.Grants:
    """What a worker's scripts may use: the app folder, TMPDIR and the sites' own folders (write), their logs
    (write-only: one site's script cannot read another's output), the Python installation, `node`, system files and
    `data_paths`."""
    read = (*sandbox.SYSTEM_READ, *sandbox.python_paths(), *sandbox.package_dirs(), *spec.data_paths)
    write = (str(spec.app_dir), str(spec.tmp_dir), *sandbox.SYSTEM_WRITE,
             *((str(spec.sites_dir),) if spec.sites_dir is not None else ()))
    return sandbox.Grants(read=read, write=write, append=(str(spec.log_dir),))


@dataclass
class _Site:
    conn: ThreadConnection
    thread: threading.Thread | None = None
    outstanding: dict[int, int] = field(default_factory=dict)  # task id -> round
    round: int = 0
    gone: str = ""  # why the script is gone (it exited or crashed)


class SiteLogs:
    """Where the scripts' output goes: `<log_dir>/<site>.log`, a timestamped line per line printed.

    It replaces sys.stdout and sys.stderr in the worker; output from outside site threads goes to
    `fallback`.
    """

    def __init__(self, log_dir: Path, fallback: IO[str], first_line: str = "") -> None:
        self._dir = log_dir
        self._fallback = fallback
        self._first = first_line
        self._files: dict[str, IO[str]] = {}
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        site = current_site()
        if site is None:
            return self._fallback.write(text)
        with self._lock:
            pending = self._partial.pop(site, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[site] = rest
            for line in lines:
                self.line(site, line, locked=True)
        return len(text)

    def line(self, site: str, line: str, locked: bool = False) -> None:
        """Add one line to `site`'s log."""
        with contextlib.nullcontext() if locked else self._lock:
            out = self._files.get(site)
            if out is None:
                out = self._files[site] = open(self._dir / f"{site}.log", "a", encoding="utf-8")  # noqa: SIM115
                if self._first:
                    out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self._first}\n")
            out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line.rstrip(chr(13))}\n")

    def flush(self) -> None:
        site = current_site()
        with self._lock:
            if site is not None and site in self._partial:
                self.line(site, self._partial.pop(site), locked=True)
            for out in self._files.values():
                out.flush()

    def close(self) -> None:
        with self._lock:
            for site, rest in self._partial.items():
                self.line(site, rest, locked=True)
            self._partial.clear()
            for out in self._files.values():
                out.close()
            self._files.clear()

    def isatty(self) -> bool:
        return False


class Worker:
    """The sites of one worker process (or Ray actor, `ray_engine`) and where their answers go (`outbox`)."""

    def __init__(self, outbox: Callable[[FromWorker, bytes], None], spec: WorkerSpec, logs: SiteLogs) -> None:
        self._outbox = outbox  # where answers go: the pipe to the main process, or a Ray actor's queue
        self._spec = spec
        self._logs = logs
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._baton = threading.Lock()
        self._sites: dict[str, _Site] = {}
        path = spec.app_dir / spec.script
        self._path = path
        self._code = compile(path.read_bytes(), str(path), "exec")

    def serve(self, pipe: Connection) -> None:
        """Handle the main process's messages on `pipe` until the job ends (or the main process goes away)."""
        while True:
            message: ToWorker
            try:
                message, payload = receive(pipe, TO_WORKER)
            except LinkError as exc:
                TO_WORKER.refuse(exc, log)
                continue
            except (EOFError, OSError):
                message, payload = SimEnd(), b""
            if isinstance(message, SimTask):
                self.assign(message, payload)
            elif isinstance(message, SimEnd):
                self.end()
                return

    def assign(self, message: SimTask, payload: bytes) -> None:
        """Hand a task (and its params) to the scripts of its sites, starting a site's script on its first."""
        task_id, round_no = message.task_id, message.round
        frame = frame_for_task(task_id, message.task_kind, round_no, message.meta, len(payload))
        for site in message.sites:
            self._assign(site, task_id, round_no, frame, payload)

    def _send(self, message: FromWorker, payload: bytes = b"") -> None:
        with self._send_lock, contextlib.suppress(OSError):
            self._outbox(message, payload)

    def _assign(self, site: str, task_id: int, round_no: int, frame: bytes, payload: bytes) -> None:
        with self._state_lock:
            state = self._sites.get(site)
            if state is None:
                state = self._sites[site] = _Site(ThreadConnection(site, self._baton, self._from_script))
            if state.gone:
                gone = state.gone
            else:
                gone = ""
                state.outstanding[task_id] = round_no
                state.round = round_no
                state.conn.put(frame, payload)
                if state.thread is None:
                    state.thread = threading.Thread(
                        target=run_script, name=f"flctl-sim-{site}", daemon=True,
                        args=(self._code, self._path, site, self._spec.job_id, state.conn, self._baton, self._exited))
                    state.thread.start()
        if gone:
            self._send(SimFailure(site=site, task_id=task_id, reason=gone))

    def _from_script(self, site: str, frame: bytes, payload: bytes) -> None:
        """A frame the script sent (with its payload): forward answers and metrics to the main process."""
        message, _size = wire.decode(frame)
        if isinstance(message, wire.Result):
            with self._state_lock:
                known = self._sites[site].outstanding.pop(message.task_id, None) is not None
            if known:
                self._send(SimResult(site=site, task_id=message.task_id, num_examples=message.num_examples,
                                     metrics=message.metrics, meta=message.meta, size=len(payload)), payload)
        elif isinstance(message, wire.Log):
            with self._state_lock:
                round_no = self._sites[site].round
            self._send(SimMetric(site=site, round=round_no, name=message.name, value=message.value, step=message.step))

    def _exited(self, site: str, code: int, lines: list[str]) -> None:
        """A site's script returned or raised: fail whatever it had not answered."""
        for line in lines:
            self._logs.line(site, line)
        with self._state_lock:
            state = self._sites[site]
            pending = dict(state.outstanding)
            state.outstanding.clear()
            last = f": {lines[-1]}" if lines else ""
            state.gone = (f"the script failed (exit code {code}){last}" if code else
                          f"the script exited (code {code})")
        for task_id, round_no in pending.items():
            self._send(SimFailure(site=site, task_id=task_id,
                                  reason=f"{state.gone} before answering its task (round {round_no + 1})"))

    def end(self) -> None:
        """No more tasks: let every script see the end of the job and return (at most `_END_GRACE_S`), then say
        `SimEnded`."""
        end = wire.encode(wire.End())
        with self._state_lock:
            states = list(self._sites.values())
        for state in states:
            state.conn.put(end)
        deadline = time.monotonic() + _END_GRACE_S
        for state in states:
            if state.thread is not None:
                state.thread.join(max(0.0, deadline - time.monotonic()))
        self._send(SimEnded())


def main(pipe: Connection, spec: WorkerSpec) -> None:
    """The worker process's entry point (multiprocessing's target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    # Started (spawned, never forked) with the scripts' minimal environment: the simulation's own never was here.
    # Confined before any thread starts, so every site thread is.
    if spec.isolation.kind == "landlock":
        try:
            sandbox.restrict(worker_grants(spec), spec.isolation.abi)
        except OSError as exc:  # its sites then fail: "its simulator worker process died"
            print(f"flctl simulate: cannot confine the worker with Landlock: {exc}", file=sys.__stderr__)
            os._exit(1)
    logs = host_sites(spec)
    try:  # the worker sends one message at a time (its send lock)
        Worker(lambda message, payload: send(pipe, FROM_WORKER, message, payload), spec, logs).serve(pipe)
    finally:
        logs.close()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        pipe.close()
    os._exit(0)  # scripts that never returned are daemon threads: do not wait for them


def host_sites(spec: WorkerSpec) -> SiteLogs:
    """Make this process a home for sites' scripts: the app folder as working folder, its package (and the job's
    compat framework) first on sys.path, the script's argv and job id; the scripts' output to their site logs
    (returned: close it at the end). A worker process calls it, and so does a Ray actor (`ray_engine`)."""
    os.chdir(spec.app_dir)
    first = [compat.path(spec.compat)] if spec.compat else []  # this job's scripts only: a fresh process
    sys.path[:0] = [*first, str(spec.app_dir), legacy.PATH]  # legacy: old scripts' `import node.api` still works
    sys.argv = [spec.script, *spec.argv]
    os.environ[wire.JOB_ID_ENV] = spec.job_id
    logs = SiteLogs(spec.log_dir, sys.__stderr__ or sys.stderr, f"isolation: {spec.isolation.describe()}")
    sys.stdout = sys.stderr = logs
    return logs
