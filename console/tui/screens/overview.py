"""The first screen: every site and every job, live."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header

from flctl.console.tui.cells import age
from flctl.console.tui.widgets.connection_bar import ConnectionBar
from flctl.console.tui.widgets.jobs_table import JobsTable
from flctl.console.tui.widgets.sites_table import SitesTable
from flctl.node.admin.admin_types import JobInfo, SiteInfo
from flctl.node.jobs.job_status import JobStatus

if TYPE_CHECKING:
    from flctl.console.tui.app import ConsoleApp


class OverviewScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open job", show=False),
        Binding("a", "abort", "Abort"),
        Binding("d", "download", "Download"),
        Binding("l", "logs", "Site logs"),
    ]

    @property
    def console(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection")
        sites = SitesTable(id="sites")
        sites.border_title = "Sites"
        yield sites
        jobs = JobsTable(id="jobs")
        jobs.border_title = "Jobs"
        yield jobs
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.watch(self.app, "sites", self._show_sites)
        self.watch(self.app, "jobs", self._show_jobs)
        self.watch(self.app, "now", self._tick, init=False)
        self.watch(self.app, "connection", self._connection, init=False)
        self.query_one(JobsTable).focus()

    def _show_sites(self, sites: list[SiteInfo]) -> None:
        table = self.query_one(SitesTable)
        table.show(sites, self.console.shown_now, stale=self.console.stale)
        table.set_class(self.console.stale, "-stale")
        table.border_subtitle = self._as_of(f"{sum(s.online for s in sites)}/{len(sites)} online")

    def _show_jobs(self, jobs: list[JobInfo]) -> None:
        table = self.query_one(JobsTable)
        table.show(jobs, self.console.shown_now)
        table.set_class(self.console.stale, "-stale")
        running = sum(j.status == JobStatus.RUNNING for j in jobs)
        table.border_subtitle = self._as_of(f"{running} running, {len(jobs)} in all")

    def _as_of(self, summary: str) -> str:
        """A table's summary; while disconnected, said to be what was last known, and how long ago."""
        if not self.console.stale or not self.console.last_contact:
            return summary
        return f"last known {age(self.console.now - self.console.last_contact)} ago: {summary}"

    def _connection(self, connection: object) -> None:
        self._show_sites(self.console.sites)
        self._show_jobs(self.console.jobs)

    def _tick(self, now: float) -> None:
        self._show_sites(self.console.sites)
        self._show_jobs(self.console.jobs)

    def _selected_job(self) -> str | None:
        job_id = self.query_one(JobsTable).selected
        if job_id is None:
            self.notify("no job selected", severity="warning")
        return job_id

    @on(JobsTable.Chosen)
    def _open(self, message: JobsTable.Chosen) -> None:
        self.console.open_job(message.job_id)

    @on(SitesTable.Chosen)
    def _open_sites_job(self, message: SitesTable.Chosen) -> None:
        """Enter on a site opens the job it runs, else the job highlighted in the jobs table."""
        running = next((s.running_jobs for s in self.console.sites if s.name == message.site), [])
        job_id = running[0] if running else self.query_one(JobsTable).selected
        if job_id is None:
            self.notify(f"{message.site} runs no job; pick one in the jobs table", severity="warning")
            return
        self.console.open_job(job_id)

    def action_open(self) -> None:
        if job_id := self._selected_job():
            self.console.open_job(job_id)

    def action_abort(self) -> None:
        if job_id := self._selected_job():
            self.console.abort(job_id)

    def action_download(self) -> None:
        if job_id := self._selected_job():
            self.console.download(job_id)

    def action_logs(self) -> None:
        """Logs of the highlighted site, in the job it runs (or the highlighted job)."""
        site = self.query_one(SitesTable).selected
        if site is None:
            self.notify("no site selected", severity="warning")
            return
        running = next((s.running_jobs for s in self.console.sites if s.name == site), [])
        job_id = running[0] if running else self.query_one(JobsTable).selected
        if job_id is None:
            self.notify(f"{site} has no job to show logs of", severity="warning")
            return
        self.console.open_site_logs(job_id, site)
