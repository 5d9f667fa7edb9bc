"""A job's cross-site evaluation: one row per evaluating site, one column per model (the global one and each
site's), each cell the model's metrics at that site. Hidden until the job has such a report."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from flctl.console.cli.job.render import cross_site_table
from flctl.console.tui.cells import literal


class CrossSiteTable(DataTable[Text]):
    def on_mount(self) -> None:
        self.zebra_stripes = True
        self.display = False

    def show(self, matrix: Any) -> None:
        """Show `matrix` (the `cross_site_eval` report); stay hidden when it is not one."""
        columns, rows = cross_site_table(matrix)
        self.clear(columns=True)
        if not rows:
            self.display = False
            return
        self.add_columns(*map(literal, columns))
        for row in rows:
            self.add_row(*map(literal, row), key=row[0])
        self.display = True
