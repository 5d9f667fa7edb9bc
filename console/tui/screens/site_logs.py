"""One site's log lines in one job, following new lines."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header

from flctl.console.tui.widgets.connection_bar import ConnectionBar
from flctl.console.tui.widgets.log_follower import LogFollower


class SiteLogsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, job_id: str, site: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.site = site

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection")
        log = LogFollower(self.job_id, self.site, id="site-log")
        log.border_title = f"{self.site} in job {self.job_id}"
        yield log
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"{self.site} logs"
        self.query_one(LogFollower).focus()
