"""One host's deploy log: the end of its node's log and of its supervisor's (`flctl deploy logs`)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Log

from flctl.console.tui.widgets.connection_bar import ConnectionBar


class DeployLogScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, participant: str, where: str, text: str) -> None:
        super().__init__()
        self.participant = participant
        self.where = where
        self.text = text

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection")
        log = Log(max_lines=5000, id="deploy-log")
        log.border_title = f"{self.participant} on {self.where}: deploy log"
        yield log
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"{self.participant} deploy log"
        log = self.query_one(Log)
        log.write_lines(self.text.splitlines())
        log.focus()
