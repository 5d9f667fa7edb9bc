"""A statistics job's result on the job screen: one feature at a time, its statistics for one site beside the
global figures (a table) and its histogram (global bars, the chosen site's beside them). `f` shows the next
feature, `s` compares the next site. Hidden until the job has a `statistics` report."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.markup import escape
from textual.reactive import reactive
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from flctl.console.cli.job.statistics_view import GLOBAL, feature_tables
from flctl.console.tui.cells import literal


class StatisticsPanel(Horizontal):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "next_feature", "Feature"),
        Binding("s", "next_site", "Site"),
    ]

    feature: reactive[int] = reactive(0)
    site: reactive[int] = reactive(0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report: dict[str, Any] = {}
        self.tables: list[tuple[str, list[str], list[list[str]]]] = []

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="stats-table", zebra_stripes=True, cursor_type="row")
        yield table
        yield PlotextPlot(id="stats-plot")

    def on_mount(self) -> None:
        self.display = False

    @property
    def sites(self) -> list[str]:
        """The sites that released figures, in the report's order."""
        results = self.report.get("results") or {}
        return [s for s in self.report.get("sites", []) if s in results]

    def show(self, report: Any) -> None:
        """Show `report` (a job's `statistics` report); stay hidden when it is not one."""
        if not isinstance(report, dict) or not isinstance(report.get("results"), dict) or not report.get("features"):
            self.display = False
            return
        self.report = report
        self.tables = feature_tables(report, max_sites=len(report.get("sites", [])))
        self.display = True
        self.feature, self.site = 0, 0
        self.redraw()

    def action_next_feature(self) -> None:
        if self.tables:
            self.feature = (self.feature + 1) % len(self.tables)

    def action_next_site(self) -> None:
        if self.sites:
            self.site = (self.site + 1) % len(self.sites)

    def watch_feature(self) -> None:
        self.redraw()

    def watch_site(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        if not self.tables or not self.is_mounted:
            return
        title, columns, rows = self.tables[self.feature % len(self.tables)]
        site = self.sites[self.site % len(self.sites)] if self.sites else None
        keep = [0, *(columns.index(c) for c in (site, GLOBAL) if c in columns)]
        table = self.query_one("#stats-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*(literal(columns[i]) for i in keep))  # sites' and features' names: not markup
        for row in rows:
            if row[0] != "histogram":  # plotted beside the table
                table.add_row(*(literal(row[i]) for i in keep))
        table.border_title = escape(f"Statistics: {title} ({self.feature % len(self.tables) + 1}/"
                                    f"{len(self.tables)})")
        table.border_subtitle = "f feature · s site"
        self._plot(self.report.get("features", [])[self.feature % len(self.tables)], site)

    def _plot(self, feature: str, site: str | None) -> None:
        results = self.report.get("results") or {}
        plot = self.query_one("#stats-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        glob = ((results.get(GLOBAL) or {}).get(feature) or {}).get("histogram")
        if not isinstance(glob, dict):
            plt.title(f"{feature}: no histogram")
            plot.refresh()
            return
        counts = glob["counts"]
        low, high = (float(v) for v in glob["range"])
        width = (high - low) / max(1, len(counts))
        centres = [low + width * (i + 0.5) for i in range(len(counts))]
        own = ((results.get(site) or {}).get(feature) or {}).get("histogram") if site else None
        if isinstance(own, dict):
            legend: dict[str, Any] = {"labels": [GLOBAL, str(site)]}  # plotext takes `labels`; its stub says `label`
            plt.multiple_bar(centres, [counts, [c or 0 for c in own["counts"]]], **legend)
        else:
            plt.bar(centres, counts, label=GLOBAL)
        step = max(1, len(centres) // 5)  # ticks of its own: plotext's automatic ones vary from one draw to another
        plt.xticks(centres[::step], [f"{c:.4g}" for c in centres[::step]])
        plt.title(f"{feature}: histogram" + (f", {GLOBAL} and {site}" if isinstance(own, dict) else ""))
        plot.refresh()
