"""A spare job process: an interpreter started ahead of time, its imports done, waiting for its job.

Starting Python and importing numpy, pydantic, grpc and flctl's own modules takes most of a
second on a small machine, and every job starts one such process on the server and one at each
site. So a daemon keeps one spare ready: it starts it once it is itself ready and again after a
job that took one ends (never while a job is starting, when the CPU is busiest), and hands the
next job to it by writing the job's arguments (and the file its output goes to, if any), as one
JSON line (`JobHandoff`, the spare link's one message), on the spare's stdin. The spare then runs
exactly what `python -m MODULE ARGS...` would have run, in the session of its own it was started
in. A spare that has exited is not used: the job starts a fresh interpreter, as it would without
spares. A spare whose daemon goes away reads
end-of-file and exits. A spare holds memory (about 45 MB on the server, 80 MB at a site): a node
whose `local/resources.yml` says `spare_job_process: false` keeps none.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Literal

from flctl.node.process.links import Link, LinkError, LinkMessage

log = logging.getLogger("flctl.spare")

SPARE_FLAG = "--spare"
"""The argument that starts a job process module as a spare."""


class JobHandoff(LinkMessage):
    """The job a spare runs: its module's arguments, and the file its stdout and stderr go to (if any)."""

    kind: Literal["job"] = "job"
    args: list[str]
    output: str | None = None


SPARE_LINK: Link[JobHandoff] = Link("spare job process link", JobHandoff)


class SpareProcess:
    """At most one waiting spare of `command` (which ends with SPARE_FLAG), started with `popen`'s arguments."""

    def __init__(self, command: list[str], enabled: bool = True, **popen: Any) -> None:
        if command[-1:] != [SPARE_FLAG] or popen.get("stdin") is not subprocess.PIPE or \
                not popen.get("start_new_session"):
            raise ValueError("a spare is started with --spare, in a session of its own, with a pipe on its stdin")
        self._command = command
        self._popen = popen
        self._process: subprocess.Popen[Any] | None = None
        self._closed = not enabled  # a disabled one behaves as closed: it never starts a spare
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The waiting spare's process id, if one was started and not taken."""
        process = self._process
        return None if process is None else process.pid

    def ensure(self) -> None:
        """Start a spare unless one is waiting (or the daemon is stopping)."""
        with self._lock:
            if self._closed or (self._process is not None and self._process.poll() is None):
                return
            if self._process is not None:
                log.warning("the spare job process exited with code %s; starting another", self._process.returncode)
            try:
                self._process = subprocess.Popen(self._command, **self._popen)
            except OSError as exc:
                log.warning("cannot start a spare job process: %s", exc)
                self._process = None

    def take(self, args: list[str], output: Path | None = None) -> subprocess.Popen[Any] | None:
        """The spare, now running the job `args` (its stdout and stderr appended to `output` when given).

        None when there is no live spare: then start a fresh process.
        """
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            stdin: IO[Any] | None = process.stdin
            assert stdin is not None
            line = SPARE_LINK.encode(JobHandoff(args=args, output=None if output is None else str(output)))
            try:
                stdin.write(line.decode() if isinstance(stdin, io.TextIOBase) else line)
                stdin.flush()
                return process
            except (BrokenPipeError, OSError, ValueError):
                pass
        log.warning("the spare job process had exited (code %s); starting the job in a new one", process.poll())
        _kill(process)
        return None

    def close(self) -> None:
        """Kill the waiting spare (it holds nothing) and start no other."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
        if process is not None:
            _kill(process)


def _kill(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def wait_for_job() -> list[str] | None:
    """In the spare: block until the daemon hands over a job; its arguments, or None when the daemon went away.

    When the daemon names an output file, stdout and stderr (the file descriptors) are appended to it from now on.
    """
    line = sys.stdin.readline()
    if not line.strip():
        return None
    try:
        job = SPARE_LINK.decode(line)
    except LinkError as exc:  # refused: the spare exits saying why, and the job it was handed fails
        raise SystemExit(f"flctl spare job process: {exc}") from None
    if job.output:
        sys.stdout.flush()
        sys.stderr.flush()
        with open(job.output, "ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
    return job.args
