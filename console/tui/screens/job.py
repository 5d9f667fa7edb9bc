"""One job: round progress, a metric plot per site, each site's state, and the logs as they come; once it ended,
its cross-site evaluation or statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar

from flctl.console.tui import cells
from flctl.console.tui.widgets.connection_bar import ConnectionBar
from flctl.console.tui.widgets.cross_site_table import CrossSiteTable
from flctl.console.tui.widgets.job_sites_table import JobSitesTable
from flctl.console.tui.widgets.log_follower import LogFollower
from flctl.console.tui.widgets.metric_plot import MetricPlot
from flctl.console.tui.widgets.statistics_panel import StatisticsPanel
from flctl.node import errors
from flctl.node.admin.admin_types import JobInfo
from flctl.node.jobs.job_status import JobStatus

if TYPE_CHECKING:
    from flctl.console.tui.app import ConsoleApp

RETRY_S = 1.0


class JobScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "abort", "Abort"),
        Binding("d", "download", "Download"),
        Binding("l", "site_logs", "Site logs"),
        Binding("m", "next_metric", "Metric"),
    ]

    job: reactive[JobInfo | None] = reactive(None)

    class RoundReported(Message):
        """A `round` event of this job: {"round": n, "metrics": {site: {name: value}}}."""

        def __init__(self, data: dict[str, Any]) -> None:
            super().__init__()
            self.data = data

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self._reports_asked = False

    @property
    def console(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection")
        with Horizontal(id="job-head"):
            yield Label(f"job {self.job_id}", id="job-title", markup=False)  # a site's reason is not markup
            bar = ProgressBar(total=None, show_eta=False, id="rounds")
            bar.display = False
            yield bar
        with Horizontal(id="job-body"):
            sites = JobSitesTable(id="job-sites")
            sites.border_title = "Sites"
            yield sites
            yield MetricPlot(id="plot")
        cross_site = CrossSiteTable(id="job-cross-site")
        cross_site.border_title = "Cross-site evaluation (rows evaluate the column's model)"
        yield cross_site
        yield StatisticsPanel(id="job-statistics")
        log = LogFollower(self.job_id, id="job-log")
        log.border_title = "Logs"
        yield log
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"job {self.job_id}"
        self.watch(self.app, "jobs", self._jobs_changed)
        self.watch(self.app, "now", lambda now: self.mutate_reactive(JobScreen.job), init=False)
        self.watch(self.app, "connection", lambda c: self.mutate_reactive(JobScreen.job), init=False)
        if self.console.job(self.job_id) is None:
            self.console.call_admin(f"show job {self.job_id}", lambda a: a.get_job(self.job_id), self._set_job)
        self.rounds_client = self.console.stream_client()
        self.follow_rounds()

    def _jobs_changed(self, jobs: list[JobInfo]) -> None:
        job = self.console.job(self.job_id)
        if job is not None:
            self.job = job

    def _set_job(self, job: JobInfo) -> None:
        self.job = job

    def watch_job(self, job: JobInfo | None) -> None:
        if job is None:
            return
        done = f"rounds {cells.rounds(job)}" if job.rounds else "no rounds"
        stale = self.console.stale
        known = (f"last known {cells.age(self.console.now - self.console.last_contact)} ago:  "
                 if stale and self.console.last_contact else "")
        self.query_one("#job-title", Label).update(
            f"{known}{job.id}  {job.name}  {job.status}  {done}  {cells.duration(job, self.console.shown_now)}"
            + (f"  {job.wait_reason}" if job.wait_reason and job.status == JobStatus.SUBMITTED else "")
            + (f"  {job.error}" if job.error else ""))
        bar = self.query_one("#rounds", ProgressBar)
        bar.display = bool(job.rounds)
        bar.update(total=job.rounds or None, progress=job.rounds_done)
        self.query_one(JobSitesTable).show(job, stale=stale)
        self.query_one(JobSitesTable).set_class(stale, "-stale")
        self.query_one("#job-head").set_class(stale, "-stale")
        if job.ended and not self._reports_asked:  # reports come with one job's details, once it has ended
            self._reports_asked = True
            self.console.call_admin(f"show job {self.job_id}", lambda a: a.get_job(self.job_id), self._show_reports)

    def _show_reports(self, job: JobInfo) -> None:
        self.query_one(CrossSiteTable).show(job.reports.get("cross_site_eval"))
        panel = self.query_one(StatisticsPanel)
        panel.show(job.reports.get("statistics"))
        self.query_one(MetricPlot).display = not panel.display  # a statistics job has no rounds to plot
        self.set_class(panel.display, "-statistics")

    def on_unmount(self) -> None:
        self.rounds_client.close()

    @work(thread=True, exclusive=True, group="rounds")
    def follow_rounds(self) -> None:
        """The job's events from the first: round metrics feed the plot; resume after a lost connection."""
        client = self.rounds_client
        after = 0
        while not client.closed.is_set():
            try:
                for event in client.get().watch(self.job_id, after_seq=after):
                    after = event.seq
                    if event.kind == "round":
                        self.post_message(self.RoundReported(event.data))
                return
            except errors.NotPermitted:
                return
            except errors.NodeError:
                client.reset()
                client.closed.wait(RETRY_S)

    @on(RoundReported)
    def _round(self, message: RoundReported) -> None:
        self.query_one(MetricPlot).add_round(message.data)

    def action_abort(self) -> None:
        self.console.abort(self.job_id)

    def action_download(self) -> None:
        self.console.download(self.job_id)

    def action_next_metric(self) -> None:
        self.query_one(MetricPlot).next_metric()

    def action_site_logs(self) -> None:
        site = self.query_one(JobSitesTable).selected
        if site is None:
            self.notify("no site selected", severity="warning")
            return
        self.console.open_site_logs(self.job_id, site)
