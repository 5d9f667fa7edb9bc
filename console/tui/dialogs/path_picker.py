"""Pick a folder (a job) or a file (a project.yml): a directory tree plus a path you can type."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label


class PathPicker(ModalScreen[Path | None]):
    """Returns the chosen path, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, want: Literal["folder", "file"], start: Path | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.want = want
        self.start = (start or Path.cwd()).resolve()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker") as box:
            box.border_title = self.title_text
            yield DirectoryTree(self.start, id="tree")
            yield Input(str(self.start), placeholder=f"path of a {self.want}", id="path")
            yield Label("", id="problem", classes="detail", markup=False)  # a path may hold a bracket
            with Horizontal(classes="buttons"):
                yield Button("Choose", id="choose", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(DirectoryTree.DirectorySelected)
    def _folder(self, event: DirectoryTree.DirectorySelected) -> None:
        self.query_one("#path", Input).value = str(event.path)

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#path", Input).value = str(event.path)

    @on(Input.Submitted)
    @on(Button.Pressed, "#choose")
    def _choose(self) -> None:
        path = Path(self.query_one("#path", Input).value).expanduser()
        ok = path.is_dir() if self.want == "folder" else path.is_file()
        if not ok:
            self.query_one("#problem", Label).update(f"{path} is not a {self.want}; pick one")
            return
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
