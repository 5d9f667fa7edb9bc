"""Share CPU-bound work among forked child processes, one contiguous slice of the items each.

The parent does the first slice itself while the children do the rest. A child
starts as a copy of the parent (`os.fork`): it needs no pickling of its inputs,
no re-import, and costs a few milliseconds. It reports each finished item with
one byte on a pipe and, at the end, its results as JSON (or its error), then
leaves with `os._exit`. Forking is done only when this process runs a single
thread, since a lock held by another thread would stay locked in the child;
otherwise, and for little work, everything runs here.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flctl.provisioner.errors import ProvisionError

T = TypeVar("T")
_DONE = b"+"


def worker_count(items: int, min_per_worker: int) -> int:
    """How many processes (this one included) should share `items` items: 1 unless it pays off and is safe."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, items // max(1, min_per_worker)))


def run_sliced(items: Sequence[T], work: Callable[[T], Any], workers: int,
               done: Callable[[int], None] | None = None) -> list[Any]:
    """`[work(item) for item in items]`, shared by `workers` processes; `work` must return JSON-able values.

    `done(i)` is called here, in the parent, as item `i` finishes (in whichever process). An error in a
    child is raised here: ProvisionError and OSError as themselves, anything else as a RuntimeError
    carrying the child's traceback. Children never outlive this call.
    """
    bounds = _slices(len(items), max(1, workers))
    children: list[_Child] = []
    try:
        for start, stop in bounds[1:]:
            children.append(_fork(items, start, stop, work))
        results = []
        for i in range(*bounds[0]):
            results.append(work(items[i]))
            if done:
                done(i)
            for child in children:
                child.poll(done, block=False)
        for child in children:
            results.extend(child.finish(done))
        return results
    except BaseException:
        for child in children:
            child.kill()
        raise


def _slices(n: int, workers: int) -> list[tuple[int, int]]:
    size, extra = divmod(n, workers)
    out, start = [], 0
    for k in range(workers):
        stop = start + size + (1 if k < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _fork(items: Sequence[T], start: int, stop: int, work: Callable[[T], Any]) -> _Child:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child_main(items, start, stop, work, write_fd)
    os.close(write_fd)
    return _Child(pid, read_fd, start)


def _child_main(items: Sequence[T], start: int, stop: int, work: Callable[[T], Any], fd: int) -> None:
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends a child quietly; the parent reports it
        results = []
        for i in range(start, stop):
            results.append(work(items[i]))
            os.write(fd, _DONE)
        payload: dict[str, Any] = {"results": results}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        payload = {"error": _describe(exc)}
    try:
        data = b"\n" + json.dumps(payload).encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os._exit(code)


def _describe(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ProvisionError):
        return {"type": "ProvisionError", "message": str(exc)}
    if isinstance(exc, OSError):
        return {"type": "OSError", "errno": exc.errno, "strerror": exc.strerror,
                "filename": None if exc.filename is None else os.fsdecode(exc.filename)}
    import traceback  # only ever in a child that failed

    return {"type": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc))}


def _raise(error: dict[str, Any]) -> None:
    if error["type"] == "ProvisionError":
        raise ProvisionError(error["message"])
    if error["type"] == "OSError":
        if error["filename"] is not None:
            raise OSError(error["errno"], error["strerror"], error["filename"])
        raise OSError(error["errno"], error["strerror"])
    raise RuntimeError(f"a kit-building process failed:\n{error['traceback']}")


@dataclass
class _Child:
    pid: int
    fd: int
    start: int
    finished: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False

    def poll(self, done: Callable[[int], None] | None, block: bool) -> None:
        """Read what the child wrote so far (all of it when `block`), reporting finished items."""
        while not self.eof:
            if not block and not select.select([self.fd], [], [], 0)[0]:
                return
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.eof = True
                break
            if not self.buffer:  # still in the progress bytes
                head = chunk.split(b"\n", 1)
                for _ in range(head[0].count(_DONE)):
                    if done:
                        done(self.start + self.finished)
                    self.finished += 1
                if len(head) == 1:
                    continue
                chunk = b"\n" + head[1]
            self.buffer += chunk

    def finish(self, done: Callable[[int], None] | None) -> list[Any]:
        self.poll(done, block=True)
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        try:
            payload = json.loads(bytes(self.buffer[1:])) if self.buffer else None
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "error" in payload:
            _raise(payload["error"])
        if not isinstance(payload, dict) or os.waitstatus_to_exitcode(status) != 0:
            code = os.waitstatus_to_exitcode(status)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            raise ProvisionError(f"a kit-building process {how} before it finished; run the command again")
        results: list[Any] = payload["results"]
        return results

    def kill(self) -> None:
        """Stop the child (if still running) and reap it."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0
        if not self.eof:
            self.eof = True
            os.close(self.fd)
