"""The site job process's end of an external trainer: a process the site runs itself (NVIDIA FLARE's agent), which
attaches to the job with `flctl.client.attach(...)` instead of being started by flctl (job.yml
`app: {external: true}`).

`AttachedBridge` is a `ScriptBridge` without a process: it listens on a unix socket in the job's `agent/` folder
(`flctl.node.client.attach_file`: the attach file and a 0600 token beside it), accepts the first trainer that
proves it holds the token (a connection that does not is refused, logged, and the next one awaited), and then
relays tasks and results exactly as for a script flctl started: the same protocol, the same site filters and
secure-aggregation codec in the job process around it. No trainer within `attach_timeout_s` of the first task,
or a trainer that goes away (its connection closes: it exited, crashed or was killed) before answering, fails the
site's part with a `ScriptError` saying so; the server then goes on without the site or fails the job, as
`min_sites` says. When the job ends at the site (finished, failed or stopped) the trainer gets `End` (its
`running()` turns False) and the
socket, token and attach file are removed (once a trainer attached already: one trainer per job and site); the
trainer itself keeps running, it is the site's own process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

from flctl.node.client import api_wire as wire
from flctl.node.client import attach_file
from flctl.node.client.script_bridge import _POLL_S, ScriptBridge, ScriptError, _describe
from flctl.node.jobs.tasks import Task

_HANDSHAKE_S = 5
"""How long a connecting trainer has to prove it holds the token and say hello."""


class AttachedBridge(ScriptBridge):
    """An external trainer's connection, driven task by task like a `ScriptBridge` (`start`, `run_encoded`,
    `finish`, `kill`); `agent_dir` is where the attach file, the token and the socket go."""

    def __init__(self, *, agent_dir: Path, site: str, job_id: str, on_output: Callable[[str], None],
                 on_metric: Callable[[str, float, int | None], None], framework: str = "numpy",
                 attach_timeout_s: float = 300.0, job_name: str = "") -> None:
        super().__init__(workdir=agent_dir, command=["(external trainer)"], env={}, site=site, job_id=job_id,
                         on_output=on_output, on_metric=on_metric, framework=framework)
        self._agent_dir = agent_dir
        self._attach_timeout_s = attach_timeout_s
        self._job_name = job_name
        self._attached = threading.Event()
        self.attach_path: Path | None = None

    def start(self) -> None:
        """Make the socket, the token and the attach file, and accept a trainer from now on."""
        if self._started:
            raise RuntimeError("the bridge was already started")
        self._agent_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._agent_dir, 0o700)
        address = self._agent_dir / attach_file.SOCKET_FILE
        if not attach_file.socket_fits(address):  # a deep workspace: the socket in a private temporary folder
            self._tmp = Path(tempfile.mkdtemp(prefix="flctl-agent-", dir="/tmp"))
            address = self._tmp / attach_file.SOCKET_FILE
        address.unlink(missing_ok=True)
        token = secrets.token_bytes(32)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(address))
            os.chmod(address, 0o600)
            server.listen(4)
            server.settimeout(_POLL_S)
            self.attach_path = attach_file.write_attach(self._agent_dir, str(address), token, self._site,
                                                         self._job_id, self._job_name, self._framework,
                                                         wire.PROTOCOL_VERSION)
        except BaseException:
            server.close()
            self._remove_files()
            raise
        self._started = True
        self._on_output(f"waiting for an external trainer at {self._site}: flctl.client.attach("
                        f"'{self.attach_path}')")
        self._thread("accept", self._serve, server, token)

    def run_encoded(self, task: Task, payload: list[wire.Payload],
                    timeout_s: float | None = None) -> tuple[wire.Result, memoryview]:
        """`ScriptBridge.run_encoded`, once a trainer attached: ScriptError when none has within the attach
        timeout."""
        if self._started and not self._attached.wait(self._attach_timeout_s):
            raise ScriptError(f"no external trainer attached within {self._attach_timeout_s:g} s to take "
                              f"{_describe(task)}; start one on this site's machine with "
                              f"flctl.client.attach('{self.attach_path}')")
        return super().run_encoded(task, payload, timeout_s)

    def finish(self, timeout_s: float = 30) -> int:
        """Tell the trainer the job has ended here (its `running()` turns False) and stop listening; 0."""
        if not self._started:
            raise RuntimeError("the bridge was never started")
        with self._lock:
            self._ending = True
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    wire.send(self._conn, wire.End())
        self._shutdown()
        return 0

    def kill(self) -> None:
        """The job ended here otherwise than finished (failed, stopped, or this site's part is over): tell the
        trainer (`End`, its `running()` turns False; an answer it still sends raises ConnectionError) and drop the
        connection now. The trainer is the site's own process: it is never killed."""
        if not self._started:
            return
        self._killed = True
        with self._lock:
            self._ending = True
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    wire.send(self._conn, wire.End())
        self._shutdown()

    def _shutdown(self) -> None:
        super()._shutdown()
        self._remove_files()

    def _remove_files(self) -> None:
        for name in (attach_file.ATTACH_FILE, attach_file.TOKEN_FILE, attach_file.SOCKET_FILE):
            with contextlib.suppress(OSError):
                (self._agent_dir / name).unlink()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _serve(self, server: socket.socket, authkey: bytes) -> None:
        """Accept trainers until one holds the token and speaks this protocol, then read its messages."""
        with server:
            while True:
                sock = self._accept(server)
                if sock is None:
                    return
                conn = self._handshake(sock, authkey)
                if conn is not None:
                    break
        with self._lock:
            self._sock, self._conn, self._connected = sock, conn, True
            if self._ending:
                with contextlib.suppress(OSError):
                    wire.send(conn, wire.End())
        self._remove_files()  # one trainer per job and site: nobody else finds the way in now
        self._on_output(f"an external trainer attached at {self._site}{_peer(sock)}")
        self._attached.set()
        self._read(conn)

    def _handshake(self, sock: socket.socket, authkey: bytes) -> Connection[Any, Any] | None:
        """The connection once the trainer proved it holds the token and said hello; None (refused, logged)."""
        peer = _peer(sock)
        _receive_timeout(sock, _HANDSHAKE_S)  # a peer that says nothing does not hold up the next one
        conn: Connection[Any, Any] = Connection(os.dup(sock.fileno()))
        try:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
            hello, _ = wire.decode(conn.recv_bytes())
            if not isinstance(hello, wire.Hello) or hello.version != wire.PROTOCOL_VERSION:
                raise wire.WireError(f"it speaks another Client API protocol ({hello}); this site speaks version "
                                     f"{wire.PROTOCOL_VERSION}")
        except (AuthenticationError, EOFError, OSError, wire.WireError) as exc:
            conn.close()
            sock.close()
            self._on_output(f"refused a trainer's connection at {self._site}{peer}: "
                            f"{exc or type(exc).__name__}")
            return None
        _receive_timeout(sock, 0)
        return conn

    def _ended_error(self, task: Task) -> ScriptError:
        if self._killed:
            return ScriptError(f"the external trainer was detached before answering {_describe(task)}")
        return ScriptError(f"the external trainer went away (its connection closed: it exited, crashed or was "
                           f"killed) before answering {_describe(task)}")


def _receive_timeout(sock: socket.socket, seconds: int) -> None:
    """SO_RCVTIMEO on `sock` (0: none), which a `Connection` on a dup of it obeys too (a blocking read fails)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, 0))


def _peer(sock: socket.socket) -> str:
    """` (pid N)`: the connecting process, from the socket's peer credentials (Linux); '' where unknown."""
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
    except (OSError, AttributeError):
        return ""
    return f" (pid {pid})"
