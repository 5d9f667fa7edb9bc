"""Pick the federation context the console acts in (`flctl context add` makes them)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class ChooseContext(ModalScreen[str | None]):
    """The contexts, the current one marked; enter picks one, escape keeps the current."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, names: list[str], current: str) -> None:
        super().__init__()
        self.names = names
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Switch to which federation?", classes="question")
            yield OptionList(*(Option(f"{'* ' if n == self.current else '  '}{n}", id=n) for n in self.names),
                             id="contexts")
            yield Label("enter: switch   escape: stay", classes="detail")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        if self.current in self.names:
            options.highlighted = self.names.index(self.current)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
