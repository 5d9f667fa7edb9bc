"""Model bytes the server moved: tasks sent to sites, results received from them (the Prometheus counters).

Counted once per whole transfer, not per chunk: one locked addition beside a transfer of megabytes.
"""

from __future__ import annotations

import threading


class Traffic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.received = 0

    def add_sent(self, size: int) -> None:
        with self._lock:
            self.sent += size

    def add_received(self, size: int) -> None:
        with self._lock:
            self.received += size
