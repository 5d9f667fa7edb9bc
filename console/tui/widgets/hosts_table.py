"""The hosts of a deployment: each participant, where it runs, its state and why it is not further."""

from __future__ import annotations

from flctl.console.tui.deployment_subject import HostRow
from flctl.console.tui.widgets.keyed_table import KeyedTable


class HostsTable(KeyedTable):
    COLUMNS = ("participant", "host", "state", "reason")

    def show(self, rows: list[HostRow]) -> None:
        self.show_rows([(r.participant, r.cells()) for r in rows])
