"""One metric (loss, accuracy…) over rounds, a line per site."""

from __future__ import annotations

from textual.reactive import reactive
from textual_plotext import PlotextPlot

from flctl.console.tui.metrics import MetricHistory, drawable


class MetricPlot(PlotextPlot):
    metric: reactive[str] = reactive("")

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = MetricHistory()
        self.caption = ""
        """The plot's title as last drawn."""

    def add_round(self, data: dict[str, object]) -> None:
        if self.history.add_round(data):
            if not self.metric:
                self.metric = self.history.names[0]
            self.replot()

    def next_metric(self) -> None:
        names = self.history.names
        if names:
            self.metric = names[(names.index(self.metric) + 1) % len(names)] if self.metric in names else names[0]

    def watch_metric(self, metric: str) -> None:
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        series, left_out = drawable(self.history.series(self.metric))
        self.caption = (f"{self.metric} per site" if self.metric else "no metrics yet") + (
            f" ({left_out} nan/inf not drawn)" if left_out else "")
        plt.title(self.caption)
        plt.xlabel("round")
        # Events count rounds from 0 (the JSON convention); people count them from 1, as everywhere on screen.
        for site, points in sorted(series.items()):
            plt.plot([p[0] + 1 for p in points], [p[1] for p in points], label=site, marker="braille")
        rounds = sorted({float(p[0] + 1) for pts in series.values() for p in pts})
        if rounds:
            plt.xticks(rounds)
        self.refresh()
