"""The site job process's end of the Client API: runs the training script and hands it tasks.

The script runs as a subprocess in a session (process group) of its own, so `kill()` also stops
whatever it started (data loader workers, torchrun ranks…). It connects back over a unix socket
in a private temporary folder (mode 0700), authenticated by a random key; the protocol is
`flctl.node.client.api_wire` (bytes only, never pickle). Three threads per script: one accepts the connection
and reads its messages (metrics go to `on_metric` as they arrive), one forwards its output (stdout
and stderr merged) line by line to `on_output`, and one waits for it to exit.

When the script exits, what is left of its process group is killed: nothing a job started
outlives it at the site.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import IO, Any

import flctl
from flctl.node.client import api_wire as wire
from flctl.node.client import compat, legacy
from flctl.node.errors import NodeError
from flctl.node.jobs.tasks import Task, TaskResult
from flctl.node.site.sandbox import Confinement, Isolation, chown_tree, launcher, script_env, script_grants, user_ids
from flctl.node.wire.model_buffers import ModelBuffers
from flctl.node.wire.tensors import decode, layout, parse_header

_TAIL_LINES = 20
"""How many of the script's last output lines a `ScriptError` quotes."""
_POLL_S = 0.1
"""How often the accepting thread checks whether it should stop."""
_DRAIN_S = 2.0
"""How long to wait for the script's last messages and output once it has exited."""
_REAP_S = 10.0
"""How long `kill()` waits for a killed script to be reaped."""


class ScriptError(NodeError):
    """The training script exited, crashed, misbehaved or timed out before answering its task.

    `exit_code` is its exit status when it has exited (negative: killed by that signal);
    `output` holds its last lines of output, which the message quotes.
    """

    def __init__(self, message: str, *, exit_code: int | None = None, output: list[str] | None = None) -> None:
        self.exit_code = exit_code
        self.output = output or []
        if self.output:
            message += "; its last output:\n" + "\n".join(self.output)
        super().__init__(message)


@dataclass(frozen=True)
class _Asked:
    """The script asked for its next task."""


@dataclass(frozen=True)
class _Answered:
    result: wire.Result
    payload: memoryview


@dataclass(frozen=True)
class _Closed:
    """The script's connection ended."""


@dataclass(frozen=True)
class _Exited:
    code: int


@dataclass(frozen=True)
class _Broken:
    """The script broke the protocol."""

    message: str


@dataclass(frozen=True)
class _Failed:
    """A callback (`on_output`, `on_metric`) raised: a bug of the caller's, re-raised by `run_task`."""

    error: Exception


_Event = _Asked | _Answered | _Closed | _Exited | _Broken | _Failed


class ScriptBridge:
    """One training script run as a subprocess, driven task by task.

    `start()`, then `run_task()` once per task, then `finish()` (or `kill()`). Each callback is
    called from a thread of the bridge: `on_output(line)` for every line the script prints,
    `on_metric(name, value, step)` for every `fl.log(...)` as it happens.

    The script gets a minimal environment (`flctl.node.site.sandbox.script_env`: never the site's own variables) and
    runs confined as `confine` says (default: no isolation, `workdir` as its workspace). Its params are numpy arrays
    or torch tensors as `framework` says ("numpy", "pytorch"); `compat` (job.yml's app.compat) puts that
    framework's Client API (`flctl.node.client.compat`) first on its path. The script's answers are read into
    `buffers` (`flctl.node.wire.model_buffers`; default: a new buffer each time).
    """

    def __init__(self, *, workdir: Path, command: list[str], env: dict[str, str], site: str, job_id: str,
                 on_output: Callable[[str], None], on_metric: Callable[[str, float, int | None], None],
                 confine: Confinement | None = None, framework: str = "numpy", compat: str | None = None,
                 buffers: ModelBuffers | None = None) -> None:
        if not command:
            raise ValueError("the script's command is empty")
        self._workdir = workdir
        self._confine = confine or Confinement(Isolation("none"), workdir)
        self._command = list(command)
        self._env = dict(env)
        self._site = site
        self._job_id = job_id
        self._framework = framework
        self._compat = compat
        self._on_output = on_output
        self._on_metric = on_metric
        self._buffers = buffers or ModelBuffers(keep=0)
        self._events: queue.Queue[_Event] = queue.Queue()
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._proc: subprocess.Popen[str] | None = None
        self._tmp: Path | None = None
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._exited = threading.Event()
        # reentrant: kill() may run in a signal handler while this thread holds one
        self._lock = threading.RLock()  # guards _sock, _conn, _ending and every send
        self._sock: socket.socket | None = None
        self._conn: Connection[Any, Any] | None = None
        self._ending = False
        self._reap_lock = threading.RLock()  # the group is signalled only while its leader is not reaped
        self._reaped = False
        self._killed = False
        self._connected = False
        self._waiting = False  # the script asked and no task was given yet
        self._task_seq = 0
        self._exit_code: int | None = None  # set once run_task has seen the exit
        self._closed = False
        self._started = False  # start() ran (a script was spawned, or an external trainer may attach)

    @property
    def site(self) -> str:
        """The site the script runs at."""
        return self._site

    @property
    def pid(self) -> int | None:
        """The script's process id (and its process group's), once started."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Listen for the script's connection, then start the script."""
        if self._proc is not None:
            raise RuntimeError("the script bridge was already started")
        tmp = Path(tempfile.mkdtemp(prefix="flctl-api-"))  # mode 0700
        if len(str(tmp / "api.sock")) > 100:  # unix socket paths are short (104 bytes on macOS)
            tmp.rmdir()
            tmp = Path(tempfile.mkdtemp(prefix="flctl-api-", dir="/tmp"))
        self._tmp = tmp
        address = str(tmp / "api.sock")
        authkey = secrets.token_bytes(32)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(address)
            server.listen(1)
            server.settimeout(_POLL_S)
            self._proc = self._spawn(address, authkey)
        except BaseException:
            server.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        proc = self._proc
        assert proc.stdout is not None
        self._started = True
        self._thread("accept", self._serve, server, authkey)
        self._thread("output", self._forward_output, proc.stdout)
        self._thread("wait", self._wait, proc)

    def run_task(self, task: Task, timeout_s: float | None = None) -> TaskResult:
        """Give `task` to the script when it asks for one and return its answer.

        ScriptError when the script exits, crashes or breaks the protocol first, or `timeout_s`
        passes (the script then keeps running: `kill()` stops it, and a late answer is dropped).
        """
        answer, payload = self.run_encoded(task, list(layout(task.params).parts()), timeout_s)
        params = decode(payload)
        return TaskResult(site=self._site, params=params, num_examples=answer.num_examples,
                          metrics=dict(answer.metrics), meta=dict(answer.meta))

    def run_encoded(self, task: Task, payload: list[wire.Payload],
                    timeout_s: float | None = None) -> tuple[wire.Result, memoryview]:
        """`run_task` with the params already encoded (safetensors bytes, in parts; `task.params` is not used):
        the script's answer and its params, still encoded (checked as safetensors), so a site's job process
        passes a model between the server and the script without decoding or copying it. `payload` is emptied
        once sent, so that the caller, holding no other reference, holds no model while the script works."""
        if not self._started:
            raise RuntimeError("start() the script bridge before running tasks")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._task_seq += 1
        task_id = self._task_seq
        while not self._waiting:
            if isinstance(self._next_event(task, deadline, timeout_s), _Asked):
                self._waiting = True
        parts = list(payload)
        payload.clear()
        with self._lock, contextlib.suppress(OSError):  # a script that went away shows as _Closed/_Exited
            if self._conn is not None:
                wire.send(self._conn, wire.Assign(task_id, task.kind, task.round, task.meta), parts)
        del parts
        self._waiting = False
        while True:
            event = self._next_event(task, deadline, timeout_s)
            if isinstance(event, _Asked):
                self._waiting = True
                raise ScriptError(f"the script asked for another task before answering {_describe(task)}; "
                                  "answer each task with fl.send()")
            if isinstance(event, _Answered) and event.result.task_id == task_id:  # older answers came too late
                try:
                    parse_header(event.payload, len(event.payload))
                except ValueError as exc:
                    raise ScriptError(f"the script answered {_describe(task)} with unreadable params: "
                                      f"{exc}") from None
                return event.result, event.payload

    def finish(self, timeout_s: float = 30) -> int:
        """Tell the script there are no more tasks and wait for it to exit; its exit code.

        The script's group is killed when it has not exited after `timeout_s`.
        """
        proc = self._proc
        if proc is None:
            raise RuntimeError("the script bridge was never started")
        with self._lock:
            self._ending = True
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    wire.send(self._conn, wire.End())
        if not self._exited.wait(timeout_s):
            self.kill()
        self._shutdown()
        return proc.returncode if proc.returncode is not None else -signal.SIGKILL

    def kill(self) -> None:
        """Kill the script and everything in its process group now (SIGKILL); calling it again does nothing."""
        if self._proc is None:
            return
        with self._reap_lock:
            if not self._reaped:
                self._killed = True
                _kill_group(self._proc.pid)
        self._exited.wait(_REAP_S)
        self._shutdown()

    # -- the script's process ----------------------------------------------------------------------------------

    def _spawn(self, address: str, authkey: bytes) -> subprocess.Popen[str]:
        assert self._tmp is not None
        python_path = self._tmp / "python"  # only `flctl.client` and `flctl.node`: never a foreign site-packages
        package = python_path / "flctl"
        package.mkdir(parents=True)
        top = Path(flctl.__file__).resolve().parent
        for name in ("__init__.py", "client.py"):
            (package / name).symlink_to(top / name)
        (package / "node").symlink_to((top / "node").resolve(), target_is_directory=True)
        confine = self._confine
        scratch = self._tmp / "tmp"  # TMPDIR: removed with the Client API folder
        scratch.mkdir()
        env = script_env(os.environ, job_env=self._env, allow=confine.env_allow, home=confine.workspace, tmp=scratch)
        env.update({wire.ADDRESS_ENV: address, wire.AUTHKEY_ENV: authkey.hex(), wire.SITE_ENV: self._site,
                    wire.JOB_ID_ENV: self._job_id, wire.FRAMEWORK_ENV: self._framework,
                    wire.OUTPUT_DIR_ENV: str(confine.workspace / "outputs")})
        first = [compat.path(self._compat)] if self._compat else []  # before anything installed: this job only
        paths = (*first, str(python_path), legacy.PATH, env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        command = [sys.executable, *self._command[1:]] if self._command[0] == "python" else self._command
        try:
            if confine.isolation.kind == "user":
                uid, gid = user_ids(confine.isolation.user)
                chown_tree(confine.workspace, uid, gid)
                chown_tree(self._tmp, uid, gid)
            command = launcher(script_grants(confine.workspace, self._tmp, confine.data_paths), confine.isolation,
                               command)
            return subprocess.Popen(
                command, cwd=self._workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ScriptError(f"cannot start {' '.join(self._command)!r} in {self._workdir}: "
                              f"{exc.strerror or exc}") from None

    def _wait(self, proc: subprocess.Popen[str]) -> None:
        """Wait for the script to exit, kill what is left of its group, then reap it."""
        if hasattr(os, "waitid"):  # wait without reaping: the group id cannot be reused while we signal it
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with self._reap_lock:
            _kill_group(proc.pid)
            code = proc.wait()
            self._reaped = True
        self._events.put(_Exited(code))
        self._exited.set()

    def _forward_output(self, stream: IO[str]) -> None:
        callback: Callable[[str], None] | None = self._on_output
        with stream:
            for raw in stream:
                line = raw.rstrip("\r\n")
                self._tail.append(line)
                if callback is not None:
                    try:
                        callback(line)
                    except Exception as exc:  # noqa: BLE001 - reported to run_task; keep draining the pipe
                        self._events.put(_Failed(exc))
                        callback = None

    # -- the connection ----------------------------------------------------------------------------------------

    def _serve(self, server: socket.socket, authkey: bytes) -> None:
        """Accept the script's one connection, then read its messages until it closes."""
        with server:
            sock = self._accept(server)
        if sock is None:
            return
        conn: Connection[Any, Any] = Connection(os.dup(sock.fileno()))
        try:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
            hello, _ = wire.decode(conn.recv_bytes())
        except (AuthenticationError, EOFError, OSError, wire.WireError) as exc:
            conn.close()
            sock.close()
            self._events.put(_Closed() if isinstance(exc, EOFError | OSError) else
                             _Broken(f"the script's connection to flctl failed: {exc}"))
            return
        if not isinstance(hello, wire.Hello) or hello.version != wire.PROTOCOL_VERSION:
            self._events.put(_Broken(f"the script speaks another Client API protocol ({hello}); this site speaks "
                                     f"version {wire.PROTOCOL_VERSION}: run it with this site's flctl"))
        with self._lock:
            self._sock, self._conn, self._connected = sock, conn, True
            if self._ending:
                with contextlib.suppress(OSError):
                    wire.send(conn, wire.End())
        self._read(conn)

    def _accept(self, server: socket.socket) -> socket.socket | None:
        """The script's connection; None once the bridge stops or the script has exited without connecting."""
        while True:
            last_try = self._stop.is_set() or self._exited.is_set()  # a connection made before is still queued
            try:
                sock, _ = server.accept()
            except TimeoutError:
                if last_try:
                    return None
                continue
            except OSError:
                return None
            sock.settimeout(None)
            return sock

    def _read(self, conn: Connection[Any, Any]) -> None:
        while True:
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
                self._events.put(_Closed())
                return
            try:
                message, size = wire.decode(frame)
            except wire.WireError as exc:
                self._events.put(_Broken(f"the script sent a message flctl cannot read: {exc}"))
                return  # what follows cannot be told apart from a payload: read no further
            payload = self._buffers.take(size)  # filled straight from the socket
            try:
                wire.read_payload(conn, payload)
            except (EOFError, OSError):
                self._events.put(_Closed())
                return
            if isinstance(message, wire.Log):
                try:
                    self._on_metric(message.name, message.value, message.step)
                except Exception as exc:  # noqa: BLE001 - the caller's bug: run_task re-raises it
                    self._events.put(_Failed(exc))
            elif isinstance(message, wire.Ask):
                self._events.put(_Asked())
            elif isinstance(message, wire.Result):
                self._events.put(_Answered(message, payload))
            elif not isinstance(message, wire.Hello):
                self._events.put(_Broken(f"the script sent {message.kind!r}, which only flctl sends"))

    # -- waiting for the script --------------------------------------------------------------------------------

    def _next_event(self, task: Task, deadline: float | None, timeout_s: float | None) -> _Asked | _Answered:
        """The script's next request or answer; ScriptError when it ended, broke the protocol or timed out."""
        while True:
            if self._exit_code is not None or self._closed:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    raise self._ended_error(task) from None
            else:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    event = self._events.get(timeout=remaining)
                except queue.Empty:
                    raise ScriptError(f"the script did not answer {_describe(task)} within {timeout_s:g} s "
                                      "(it is still running)", output=list(self._tail)) from None
            if isinstance(event, _Exited):
                self._exit_code = event.code
                self._join("accept", "output", timeout_s=_DRAIN_S)  # its last messages and output
            elif isinstance(event, _Closed):
                # the exit usually follows: report that, with its code (its event is queued once _exited is set)
                self._closed = not self._exited.wait(_DRAIN_S)
            elif isinstance(event, _Broken):
                raise ScriptError(event.message, output=list(self._tail))
            elif isinstance(event, _Failed):
                raise event.error
            else:
                return event

    def _ended_error(self, task: Task) -> ScriptError:
        code, what = self._exit_code, _describe(task)
        output = list(self._tail)
        if self._killed:
            return ScriptError(f"the script was killed before answering {what}", exit_code=code, output=output)
        if code is None:
            return ScriptError(f"the script closed its connection to flctl before answering {what}", output=output)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return ScriptError(f"the script was killed by {name} before answering {what}", exit_code=code,
                               output=output)
        never = "" if self._connected else " without calling fl.init()"
        if code == 0:
            return ScriptError(f"the script exited (code 0){never} before answering {what}", exit_code=code,
                               output=output)
        return ScriptError(f"the script failed (exit code {code}){never} before answering {what}", exit_code=code,
                           output=output)

    # -- threads and clean-up ----------------------------------------------------------------------------------

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"flctl-script-{name}-{self._site}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _join(self, *names: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            thread = self._threads.get(name)
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _shutdown(self) -> None:
        """Stop listening, end the connection and remove the private folder (the script has exited)."""
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        self._join("accept", "output", timeout_s=_DRAIN_S)
        with self._lock:
            if self._conn is not None and not self._threads["accept"].is_alive():
                self._conn.close()
                self._conn = None
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _describe(task: Task) -> str:
    return f"task '{task.kind}' (round {task.round + 1})"
