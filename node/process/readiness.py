"""Telling whoever started a node that it is ready, through a pipe: no polling on either side.

A starter (the local federation, `flctl.cloud.local`) passes the write end of a pipe to the node and
names it in $FLCTL_READY_FD. The server writes `ready` once it listens; a site once the server
has registered it (it is then online). End-of-file without `ready` means the node exited first.
Without the variable (a node started by hand, by systemd…) this does nothing. The other way, a
`StartGate` lets a starter start sites together with their server: a site waits until the
starter closes the pipe named in $FLCTL_START_AFTER_FD, which it does once the server listens.
"""

from __future__ import annotations

import contextlib
import os
import threading

READY_FD_ENV = "FLCTL_READY_FD"
READY = b"ready\n"


class ReadyPipe:
    """The starter's pipe, taken out of the environment at once, so no child of the node inherits its name."""

    def __init__(self) -> None:
        value = os.environ.pop(READY_FD_ENV, "")
        self._fd: int | None = None
        if value.isdigit():
            with contextlib.suppress(OSError):
                os.set_inheritable(int(value), False)
                self._fd = int(value)
        self._lock = threading.Lock()

    def notify(self) -> None:
        """Write `ready` and close the pipe; later calls do nothing."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, READY)
        with contextlib.suppress(OSError):
            os.close(fd)


START_AFTER_FD_ENV = "FLCTL_START_AFTER_FD"


class StartGate:
    """A pipe the starter closes once what this node needs is up (a site's server): the node waits for it.

    So a starter can start the server and its sites at the same time, and each site connects the
    moment the server listens, rather than failing and backing off. Without $FLCTL_START_AFTER_FD
    the gate is open.
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        value = os.environ.pop(START_AFTER_FD_ENV, "")
        if not value.isdigit():
            self._open.set()
            return
        threading.Thread(target=self._read_to_end, args=(int(value),), daemon=True, name="start-gate").start()

    def _read_to_end(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)
            while os.read(fd, 64):
                pass
        with contextlib.suppress(OSError):
            os.close(fd)
        self._open.set()

    def wait(self) -> None:
        """Until the starter closed the pipe (or exited), or `open()` was called."""
        self._open.wait()

    def open(self) -> None:
        self._open.set()
