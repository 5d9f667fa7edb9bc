"""A job's log lines (all sites, or one), following new lines until the job ends."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from textual import work
from textual.widgets import Log

from flctl.console.visible_text import hanging
from flctl.node import errors
from flctl.node.admin.admin_types import LogEntry

if TYPE_CHECKING:
    from flctl.console.tui.app import ConsoleApp

RETRY_S = 1.0


def log_line(entry: LogEntry) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(entry.time))
    return hanging(f"{stamp} [{entry.site}] ", entry.line)  # a site's newlines: indented continuation lines


class LogFollower(Log):
    def __init__(self, job_id: str, site: str = "", *, id: str | None = None) -> None:
        super().__init__(max_lines=5000, id=id)
        self.job_id = job_id
        self.site = site

    def on_mount(self) -> None:
        self.client = cast("ConsoleApp", self.app).stream_client()
        self.follow()

    def on_unmount(self) -> None:
        self.client.close()

    @work(thread=True, exclusive=True, group="log")
    def follow(self) -> None:
        """Stream the lines; after a lost connection, start over (the server replays from the first line)."""
        client = self.client
        while not client.closed.is_set():
            try:
                lines = client.get().logs(self.job_id, self.site, follow=True)
                self.call_later(self.clear)
                for entry in lines:
                    self.call_later(self.write_line, log_line(entry))
                return
            except errors.NotPermitted as exc:
                self.call_later(self.write_line, f"not permitted: {exc}")
                return
            except errors.NodeError as exc:
                if client.closed.is_set():
                    return
                self.call_later(self.write_line, f"(lost the log stream: {exc}; retrying)")
            client.reset()
            client.closed.wait(RETRY_S)
