"""Each site of one job: its state, the round it works on, its latest metrics or its error."""

from __future__ import annotations

from flctl.console.tui.widgets.keyed_table import KeyedTable
from flctl.node.admin.admin_types import JobInfo


class JobSitesTable(KeyedTable):
    COLUMNS = ("site", "state", "round", "metrics")

    def show(self, job: JobInfo) -> None:
        rows = []
        for site in job.sites:
            values = job.last_metrics.get(site.name, {})
            shown = site.error or " ".join(f"{k}={v:.3g}" for k, v in sorted(values.items())) or "-"
            rows.append((site.name, (site.name, site.state, str(site.round), shown)))
        self.show_rows(rows)
