"""The sites the server knows: online state, heartbeat age, running jobs, GPUs, certificate expiry; relays with what is
below them, indented."""

from __future__ import annotations

from textual import on
from textual.message import Message
from textual.widgets import DataTable

from flctl.console.tui import cells
from flctl.console.tui.widgets.keyed_table import KeyedTable
from flctl.node.admin.admin_types import SiteInfo


class SitesTable(KeyedTable):
    COLUMNS = ("site", "org", "state", "heartbeat", "jobs", "cert expires", "gpus")

    class Chosen(Message):
        """The admin pressed enter on a site."""

        def __init__(self, site: str) -> None:
            super().__init__()
            self.site = site

    def show(self, sites: list[SiteInfo], now: float, stale: bool = False) -> None:
        """The sites; `stale`: the server is not answering, so a state is only what it was (`was online`) and the
        heartbeat ages are as of `now`, the last contact."""
        from flctl.node.admin.site_resources import gpu_cell
        from flctl.node.admin.site_tree import shown_name, tree_order

        # A relay's sites and relays follow it, indented (a hierarchical federation); the row key stays the name.
        self.show_rows([(s.name, (shown_name(depth, s.name), s.org, ("was " if stale else "") + cells.online(s),
                                  cells.heartbeat(s, now), ", ".join(s.running_jobs) or "-",
                                  cells.expiry(s.not_after, now), gpu_cell(s.resources)))
                        for depth, s in tree_order(sites)])

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Chosen(event.row_key.value))
