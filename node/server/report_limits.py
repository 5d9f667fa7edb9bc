"""How much a site may add to a job's log and metrics: each log line cut to a length (with a marker saying how much
went), and per site per job a number of log lines and of metric values a minute. What comes over that in a minute is
dropped, and the job's log says so once for that minute (never once per line dropped)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
WINDOW_S = 60.0
KEPT_WINDOWS = 4096
"""Above this many (job, site, kind) windows, those whose minute is over are forgotten."""


@dataclass(frozen=True)
class ReportLimits:
    line_chars: int
    lines_per_minute: int
    metrics_per_minute: int


@dataclass
class _Window:
    started: float
    taken: int = 0
    noted: bool = False


@dataclass
class ReportGate:
    limits: ReportLimits
    clock: Callable[[], float] = time.monotonic
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lines(self, job_id: str, site: str, lines: list[tuple[float, str]]) -> tuple[list[tuple[float, str]], str]:
        """The lines of `site` to add to the job (each cut to length), and a note for the job's log ('' for none)."""
        kept, note = self._take(job_id, site, "log", lines, self.limits.lines_per_minute,
                                "log lines a minute", "max_log_lines_per_minute")
        return [(when, self.cut(line)) for when, line in kept], note

    def metrics(self, job_id: str, site: str, values: list[T]) -> tuple[list[T], str]:
        """The metric values of `site` to add to the job, and a note for the job's log ('' for none)."""
        return self._take(job_id, site, "metric", values, self.limits.metrics_per_minute, "metric values a minute",
                          "max_metrics_per_minute")

    def cut(self, line: str) -> str:
        over = len(line) - self.limits.line_chars
        if over <= 0:
            return line
        return f"{line[:self.limits.line_chars]} [... {over} more characters cut (max_log_line_chars)]"

    def _take(self, job_id: str, site: str, kind: str, items: list[T], cap: int, what: str,
              key: str) -> tuple[list[T], str]:
        if not items:
            return items, ""
        with self._lock:
            return self._take_locked(job_id, site, kind, items, cap, what, key)

    def _take_locked(self, job_id: str, site: str, kind: str, items: list[T], cap: int, what: str,
                     key: str) -> tuple[list[T], str]:
        now = self.clock()
        window = self._windows.get((job_id, site, kind))
        if window is None or now - window.started >= WINDOW_S:
            if len(self._windows) >= KEPT_WINDOWS:
                self._forget(now)
            window = self._windows[(job_id, site, kind)] = _Window(now)
        room = max(0, cap - window.taken)
        kept = items[:room]
        window.taken += len(kept)
        if len(kept) == len(items) or window.noted:
            return kept, ""
        window.noted = True
        return kept, (f"{site} sent more than {cap} {what}; the rest of this minute was dropped "
                      f"(the server's local/resources.yml {key})")

    def _forget(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now - w.started >= WINDOW_S]:
            del self._windows[key]
