"""A local federation's processes: provision it, start its nodes in the background, watch them, stop them.

The plan (project, layout, commands) is `flctl.cloud.local_plan`; this module does the I/O. Each node
runs `flctl node start KIT` in a session of its own, its output in `logs/<name>.log` and its PID
(with the process's start time, so a reused PID is never signalled) in `run/<name>.pid`.
The server and the sites start at the same time; each site waits (`flctl.node.process.readiness.StartGate`)
until the server writes `ready` on its pipe (it listens), then connects and writes `ready` once the
server has registered it; end-of-file first means the node exited. No polling, no sleeps.
Stopping sends SIGTERM (a node daemon ends its job processes and their scripts), waits for every
descendant to exit (pidfd: woken by the exit, no polling), then SIGKILLs what is left, by PID.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flctl.cloud.local_plan import (
    STATE_FILE,
    PocState,
    log_file,
    node_command,
    pid_file,
    project_yaml,
    read_state,
    site_names,
)
from flctl.node.process.readiness import READY, READY_FD_ENV, START_AFTER_FD_ENV

STOP_GRACE_S = 10.0
"""How long `stop` waits for nodes (and what they started) to exit after SIGTERM before SIGKILL."""


class LocalError(Exception):
    """The local federation cannot do what was asked; `kind` is `usage`, `failed` or `timeout`."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class NodeStatus:
    """One node process of the local federation."""

    name: str
    pid: int | None
    alive: bool
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- prepare / clean ---------------------------------------------------------------------------------------------

def prepare(workspace: Path, sites: int, port: int | None = None) -> PocState:
    """Provision a local project with `sites` sites into `workspace` (which must hold no federation yet)."""
    from flctl.provisioner.build import provision
    from flctl.provisioner.project_loader import project_from_document
    from flctl.provisioner.yaml_source import parse_yaml

    if read_state(workspace) is not None or (workspace / STATE_FILE).exists():
        raise LocalError(f"a local federation is already prepared in {workspace}; use it, or remove it with "
                         "`flctl poc clean` first", "usage")
    if workspace.exists() and any(workspace.iterdir()):
        raise LocalError(f"{workspace} is not empty; pass an empty or new folder with -w", "usage")
    names = site_names(sites)
    chosen = port or free_port()
    text = project_yaml(names, chosen)
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "project.yml").write_text(text)
    result = provision(project_from_document(parse_yaml(text, str(workspace / "project.yml"))).project,
                       workspace / "kits")
    for name in names:
        _prefer_isolation(result.prod_dir / name / "local" / "resources.yml")
    state = PocState(result.project, chosen, names, str(result.prod_dir.relative_to(workspace)))
    (workspace / STATE_FILE).write_text(state.to_json())
    return state


def _prefer_isolation(resources: Path) -> None:
    """A local federation is one person's machine and data: its sites confine job scripts where the machine can
    (Landlock, or another user under root) and still run them, with a warning, where it cannot (a production
    site's default, `required`, refuses every job there)."""
    with resources.open("a") as file:
        file.write("# A local federation (flctl poc): run jobs unconfined, with a warning, where this machine cannot "
                   "confine them.\njob_isolation: preferred\n")


def clean(workspace: Path) -> None:
    """Remove the local federation's workspace; refused while any of its nodes runs."""
    state = require_state(workspace)
    running = [node.name for node in status(workspace, state) if node.alive]
    if running:
        raise LocalError(f"{', '.join(running)} still running; run `flctl poc stop` first", "usage")
    shutil.rmtree(workspace)


def require_state(workspace: Path) -> PocState:
    state = read_state(workspace)
    if state is None:
        raise LocalError(f"no local federation in {workspace}; run `flctl poc prepare` first", "usage")
    return state


# -- start -------------------------------------------------------------------------------------------------------

def start(workspace: Path, state: PocState, timeout_s: float = 30.0,
          on_step: Callable[[str], None] | None = None) -> float:
    """Start the server and every site; return once all sites are online (seconds taken).

    The sites start with the server (their imports overlap its start) and connect once it listens.
    """
    began = time.monotonic()
    running = [node.name for node in status(workspace, state) if node.alive]
    if running:
        raise LocalError(f"{', '.join(running)} already running in {workspace}; `flctl poc status` shows it, "
                         "`flctl poc stop` stops it", "usage")
    deadline = began + timeout_s
    starting: list[_Starting] = []
    gate_read, gate_write = os.pipe()  # closed once the server listens: the sites' start gate
    try:
        try:
            starting.append(_spawn(workspace, state, state.nodes()[0]))
            starting += [_spawn(workspace, state, site, gate_read) for site in state.sites]
        finally:
            os.close(gate_read)
        _wait_ready(workspace, starting[:1], deadline, f"did not listen on port {state.port} in time")
        os.close(gate_write)
        gate_write = -1
        if on_step is not None:
            on_step(f"server listening on 127.0.0.1:{state.port}")
        _wait_ready(workspace, starting[1:], deadline, "did not come online in time")
    except BaseException:
        for node in starting:
            node.close()
        stop(workspace, state)
        raise
    finally:
        if gate_write >= 0:
            os.close(gate_write)
    return time.monotonic() - began


@dataclass
class _Starting:
    """A node just started, and the read end of the pipe it writes `ready` to."""

    name: str
    process: subprocess.Popen[bytes]
    ready_fd: int

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.ready_fd)


def _spawn(workspace: Path, state: PocState, name: str, gate: int | None = None) -> _Starting:
    """Start node `name` with a pipe to say it is ready, and `gate` (a pipe's read end) to wait on, if given."""
    log = log_file(workspace, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(workspace, name).parent.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    env = {**os.environ, READY_FD_ENV: str(write_fd)}
    if gate is not None:
        env[START_AFTER_FD_ENV] = str(gate)
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(node_command(state.kit(workspace, name)), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    pass_fds=(write_fd,) if gate is None else (write_fd, gate), env=env)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    pid_file(workspace, name).write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return _Starting(name, proc, read_fd)


def _wait_ready(workspace: Path, nodes: list[_Starting], deadline: float, late: str) -> None:
    """Until every node in `nodes` has written `ready` to its pipe (woken by the writes, no polling).

    LocalError when one exits first (end-of-file on its pipe) or `deadline` passes (`late` says what is late).
    """
    waiting = {node.ready_fd: node for node in nodes}
    received = {fd: b"" for fd in waiting}
    poller = select.poll()
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    while waiting:
        remaining = deadline - time.monotonic()
        events = poller.poll(max(0.0, remaining) * 1000) if remaining > 0 else []
        if not events:
            names = sorted(node.name for node in waiting.values())
            raise LocalError(f"{', '.join(names)} {late}; see {log_file(workspace, names[0])}", "timeout")
        for fd, _ in events:
            node = waiting[fd]
            chunk = os.read(fd, 64)
            received[fd] += chunk
            if received[fd].startswith(READY):
                poller.unregister(fd)
                node.close()
                del waiting[fd]
            elif not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(STOP_GRACE_S)  # it closed the pipe on its way out: its exit code
                code = node.process.poll()
                what = "closed its readiness pipe" if code is None else f"exited (code {code})"
                raise LocalError(f"{node.name} {what} while starting; see {log_file(workspace, node.name)}")


# -- status ------------------------------------------------------------------------------------------------------

def status(workspace: Path, state: PocState) -> list[NodeStatus]:
    return [NodeStatus(name, pid, pid is not None, log_file(workspace, name))
            for name in state.nodes() for pid in [_running_pid(workspace, name)]]


def sites_online(workspace: Path, state: PocState) -> list[str] | None:
    """Sites the server sees online; None when the server cannot be reached."""
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.errors import NodeError

    try:
        with AdminClient.from_kit(state.admin_kit(workspace), timeout_s=3) as admin:
            return sorted(site.name for site in admin.list_sites() if site.online)
    except NodeError:
        return None


# -- stop --------------------------------------------------------------------------------------------------------

def stop(workspace: Path, state: PocState, grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop every node and everything they started; return the PIDs that needed SIGKILL.

    Raises LocalError when a process survives SIGKILL (it should never happen).
    """
    pids = {name: pid for name in state.nodes() if (pid := _running_pid(workspace, name)) is not None}
    tree = set(pids.values())
    for pid in pids.values():
        tree |= descendants(pid)
    for name in reversed(state.nodes()):  # sites first, then the server
        if name in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[name], signal.SIGTERM)
    left = wait_exit(tree, grace_s)
    killed = sorted(left)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    survivors = wait_exit(set(killed), 5.0)
    for name in state.nodes():
        pid_file(workspace, name).unlink(missing_ok=True)
    if survivors:
        raise LocalError(f"processes {sorted(survivors)} survived SIGKILL")
    return killed


def wait_exit(pids: set[int], timeout_s: float) -> set[int]:
    """Wait until every process in `pids` has exited (woken by each exit through a pidfd); those left."""
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid
    deadline = time.monotonic() + timeout_s
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    left = set(fds.values())
    try:
        while left:
            for pid in [p for p in left if not alive(p)]:  # exited but not reaped (a zombie) counts as gone
                left.discard(pid)
            remaining = deadline - time.monotonic()
            if not left or remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                left.discard(fds[fd])
    finally:
        for fd in fds:
            os.close(fd)
    return left


# -- /proc -------------------------------------------------------------------------------------------------------

def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def _running_pid(workspace: Path, name: str) -> int | None:
    """The node's PID when its PID file names a live process that is still that node."""
    try:
        pid_text, started = pid_file(workspace, name).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and _start_time(pid) == started else None

