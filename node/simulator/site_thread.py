"""One simulated site inside a worker process: its training script runs in a thread of its own.

The script is the job's unchanged `app/` script. It imports `flctl.node.client.api` as usual; this thread binds
an `api._Session` of its own to `flctl.node.client.api`'s thread-local slot, over an in-process connection
(`ThreadConnection`) that speaks the same frames as the unix socket of a real run
(`flctl.node.client.api_wire`), so every check the Client API makes (num_examples, metrics, meta…) is the same.

The script's loop and its Python state (module globals, the model it keeps) persist across
rounds, like a real site's script process. Only one site of a worker computes at a time: a thread
holds the worker's `baton` while it runs, and gives it up only while it waits for its next task.
So global state the script touches (torch's RNG, numpy's legacy seed, the working folder) is its
own between `receive()` and `send()`, and a deterministic script gives the same numbers as in a
real run.
"""

from __future__ import annotations

import builtins
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from flctl.node.client import api
from flctl.node.client import api_wire as wire

_current = threading.local()
"""`site`: the simulated site the current thread runs (its output goes to that site's log)."""


def current_site() -> str | None:
    """The simulated site this thread runs, or None outside site threads."""
    site: str | None = getattr(_current, "site", None)
    return site


class ThreadConnection:
    """The script's end of an in-process connection: what `flctl.node.client.api._Session` calls (`send_bytes`, `poll`,
    `recv_bytes`, and `send_raw`/`recv_raw_into` for payloads, see `flctl.node.client.api_wire.RawIO`).

    Frames from flctl wait in an inbox, each with its payload; `deliver` carries the script's
    frames away, each with its payload once all of it was sent. While the script waits for a
    frame, the thread lends the worker's baton to the other sites.
    """

    def __init__(self, site: str, baton: threading.Lock, deliver: Callable[[str, bytes, bytes], None]) -> None:
        self.site = site
        self._baton = baton
        self._deliver = deliver
        self._inbox: deque[tuple[bytes, bytes]] = deque()
        self._ready = threading.Condition()
        self._incoming = memoryview(b"")  # the payload of the frame the script last received, not yet read
        self._outgoing: tuple[bytes, int, bytearray] | None = None  # a frame sent, waiting for its payload

    def put(self, frame: bytes, payload: bytes = b"") -> None:
        """A frame (and its payload) for the script (called by the worker)."""
        with self._ready:
            self._inbox.append((frame, payload))
            self._ready.notify()

    def send_bytes(self, frame: bytes) -> None:
        _message, size = wire.decode(frame)
        if size:
            self._outgoing = (frame, size, bytearray())
        else:
            self._deliver(self.site, frame, b"")

    def send_raw(self, data: memoryview) -> None:
        if self._outgoing is None:
            raise OSError("payload bytes sent without a frame announcing them")
        frame, size, payload = self._outgoing
        payload += data
        if len(payload) >= size:
            self._outgoing = None
            self._deliver(self.site, frame, bytes(payload))

    def poll(self, timeout: float | None = None) -> bool:
        return self._wait(timeout)

    def recv_bytes(self) -> bytes:
        self._wait(None)
        with self._ready:
            frame, payload = self._inbox.popleft()
        self._incoming = memoryview(payload)
        return frame

    def recv_raw_into(self, view: memoryview) -> None:
        if view.nbytes > self._incoming.nbytes:
            raise EOFError("the connection ended inside a payload")
        view[:] = self._incoming[:view.nbytes]
        self._incoming = self._incoming[view.nbytes:]

    def _wait(self, timeout: float | None) -> bool:
        with self._ready:
            if self._inbox:
                return True
        self._baton.release()
        try:
            with self._ready:
                return self._ready.wait_for(lambda: bool(self._inbox), timeout)
        finally:
            self._baton.acquire()


def run_script(code: Any, path: Path, site: str, job_id: str, conn: ThreadConnection, baton: threading.Lock,
               on_exit: Callable[[str, int, list[str]], None]) -> None:
    """The body of a site's thread: run the script as `__main__` of a module of its own, then report
    its exit code (and the traceback lines of an exception) through `on_exit`."""
    baton.acquire()
    _current.site = site
    api._thread.session = api._Session(cast(Any, conn), site, job_id)  # the simulator's seam in flctl.node.client.api
    namespace = {"__name__": "__main__", "__file__": str(path), "__builtins__": builtins, "__package__": None}
    code_out, lines = 0, []
    try:
        exec(code, namespace)  # the job's own training script, as a real site runs it
        _flush()
    except SystemExit as exc:
        _flush()
        code_out = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            lines = [str(exc.code)]
    except BaseException:  # noqa: BLE001 - the script crashed: its traceback goes to its log, like a real run
        _flush()
        code_out = 1
        lines = traceback.format_exc().rstrip().splitlines()
    finally:
        api._thread.session = None
        namespace.clear()
        baton.release()
    on_exit(site, code_out, lines)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        flush = getattr(stream, "flush", None)
        if flush is not None:
            flush()


def frame_for_task(task_id: int, task_kind: str, round_no: int, meta: dict[str, Any], payload_size: int) -> bytes:
    """The Assign frame a script receives for a task (its payload follows it)."""
    return wire.encode(wire.Assign(task_id, task_kind, round_no, meta), payload_size)
