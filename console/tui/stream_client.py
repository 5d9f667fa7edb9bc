"""A client of its own for one long-lived stream (logs, a job's events): closing it ends the stream at once."""

from __future__ import annotations

import threading

from flctl.console.tui.admin_api import Admin, Connect


class StreamClient:
    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._admin: Admin | None = None
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def get(self) -> Admin:
        """The open client; a fresh one after `reset`."""
        with self._lock:
            if self._admin is None:
                self._admin = self._connect()
            return self._admin

    def reset(self) -> None:
        """Drop the client (after a lost connection): the next `get` connects anew."""
        with self._lock:
            if self._admin is not None:
                self._admin.close()
            self._admin = None

    def close(self) -> None:
        """End the stream now (the thread reading it sees it end) and refuse to reconnect."""
        self.closed.set()
        self.reset()
