"""The sites the server knows: online state, heartbeat age, running jobs, certificate expiry."""

from __future__ import annotations

from flctl.console.tui import cells
from flctl.console.tui.widgets.keyed_table import KeyedTable
from flctl.node.admin.admin_types import SiteInfo


class SitesTable(KeyedTable):
    COLUMNS = ("site", "org", "state", "heartbeat", "jobs", "cert expires")

    def show(self, sites: list[SiteInfo], now: float) -> None:
        self.show_rows([(s.name, (s.name, s.org, cells.online(s), cells.heartbeat(s, now),
                                  ", ".join(s.running_jobs) or "-", cells.expiry(s.not_after, now))) for s in sites])
