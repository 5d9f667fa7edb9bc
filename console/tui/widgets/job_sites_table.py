"""Each site of one job: its state, the round it works on (counted from 1), its latest metrics or its error."""

from __future__ import annotations

from flctl.console.tui.widgets.keyed_table import KeyedTable
from flctl.node.admin.admin_types import JobInfo


class JobSitesTable(KeyedTable):
    COLUMNS = ("site", "state", "round", "metrics")

    def show(self, job: JobInfo, stale: bool = False) -> None:
        """`stale`: the server is not answering, so each state is only what it was (`was running`)."""
        rows = []
        for site in job.sites:
            values = job.last_metrics.get(site.name, {})
            shown = site.error or " ".join(f"{k}={v:.3g}" for k, v in sorted(values.items())) or "-"
            state = ("was " if stale else "") + site.state
            rows.append((site.name, (site.name, state, str(site.round + 1) if site.round >= 0 else "-", shown)))
        self.show_rows(rows)
