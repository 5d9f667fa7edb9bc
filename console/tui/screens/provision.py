"""Provisioning: open a project.yml, see its participants or its problems, make the kits with progress."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, ProgressBar, Static

from flctl.console.tui.cells import literal
from flctl.console.tui.widgets.connection_bar import ConnectionBar

if TYPE_CHECKING:
    from flctl.provisioner.build import ProvisionResult
    from flctl.provisioner.project import Project


class ProvisionScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+o", "open", "Open"),
        Binding("ctrl+b", "build", "Provision"),
    ]

    project: reactive[Project | None] = reactive(None)

    class Progressed(Message):
        def __init__(self, done: int, total: int, who: str) -> None:
            super().__init__()
            self.done, self.total, self.who = done, total, who

    class Built(Message):
        def __init__(self, result: ProvisionResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self, path: Path | None = None, workspace: Path = Path("workspace")) -> None:
        super().__init__()
        self.start_path = path
        self.workspace = workspace

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection")
        with Horizontal(id="prov-paths"):
            project = Input(str(self.start_path or ""), placeholder="project.yml (ctrl+o to browse)", id="project")
            project.border_title = "project.yml"
            yield project
            workspace = Input(str(self.workspace), id="workspace")
            workspace.border_title = "workspace"
            yield workspace
        with Horizontal(id="prov-body"):
            people = DataTable[Text](id="participants", cursor_type="row")
            people.border_title = "Participants"
            yield people
            result = DataTable[Text](id="prov-result", cursor_type="row")
            result.border_title = "Kits"
            yield result
        detail = Static("", id="problem-detail", markup=False)  # quotes the project's values
        detail.display = False
        yield detail
        progress = ProgressBar(total=None, id="prov-progress", show_eta=False)
        progress.display = False
        yield progress
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "provisioning"
        self.query_one("#participants", DataTable).add_columns("name", "kind", "org", "role")
        if self.start_path is not None:
            self.load(self.start_path)
        self.query_one("#project", Input).focus()

    def _result_table(self, title: str, *columns: str) -> DataTable[Text]:
        table: DataTable[Text] = self.query_one("#prov-result", DataTable)
        self._problems: list[str] = []
        self.query_one("#problem-detail", Static).display = False
        table.clear(columns=True)
        table.add_columns(*columns)
        table.border_title = title
        return table

    @on(Input.Submitted, "#project")
    def _typed(self, event: Input.Submitted) -> None:
        self.load(Path(event.value).expanduser())

    def load(self, path: Path) -> None:
        """Read and validate `path`; show its participants, or every problem with its line."""
        from flctl.provisioner.errors import InputError, ProvisionError
        from flctl.provisioner.project_loader import load_project

        self.query_one("#project", Input).value = str(path)
        try:
            self.project = load_project(path).project
        except InputError as exc:
            self.project = None
            problems = self._result_table("Problems", "line", "field", "problem")
            for p in exc.problems:
                problems.add_row(*map(literal, (str(p.line or "-"), p.field or "-", p.message,)))
                self._problems.append(f"line {p.line or '-'}, {p.field or '-'}: {p.message}")
            self._show_problem(0)
            self.notify(f"{path} has {len(exc.problems)} problem(s)", severity="error")
        except (ProvisionError, OSError) as exc:
            self.project = None
            self._result_table("Problems", "problem").add_row(*map(literal, (str(exc),)))
            self.notify(str(exc), severity="error")
        else:
            self._result_table("Kits", "kit", "kind", "status", "folder")

    @on(DataTable.RowHighlighted, "#prov-result")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_problem(event.cursor_row)

    def _show_problem(self, index: int) -> None:
        """The highlighted problem in full, wrapped under the table (a long message does not fit its cell)."""
        detail = self.query_one("#problem-detail", Static)
        problems = getattr(self, "_problems", [])
        detail.display = bool(problems)
        if problems:
            detail.update(f"{problems[min(index, len(problems) - 1)]}  (↑/↓ for the others)")

    def watch_project(self, project: Project | None) -> None:
        people: DataTable[Text] = self.query_one("#participants", DataTable)
        people.clear()
        people.display = project is not None
        if project is None:
            people.border_subtitle = ""
            return
        for who in project.participants():
            people.add_row(*map(literal, (who.name, who.kind, who.org, who.role or "-",)))
        people.border_subtitle = f"{project.name}: {people.row_count}"

    def action_open(self) -> None:
        from flctl.console.tui.dialogs.path_picker import PathPicker

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.load(path)

        self.app.push_screen(PathPicker("Open a project.yml", want="file"), chosen)

    def action_build(self) -> None:
        if self.project is None:
            self.notify("open a valid project.yml first", severity="warning")
            return
        progress = self.query_one("#prov-progress", ProgressBar)
        progress.display = True
        progress.update(total=len(self.project.participants()), progress=0)
        self.build(self.project, Path(self.query_one("#workspace", Input).value).expanduser())

    @work(thread=True, exclusive=True, group="provision")
    def build(self, project: Project, workspace: Path) -> None:
        from flctl.provisioner.build import provision
        from flctl.provisioner.errors import ProvisionError

        def progress(done: int, total: int, who: str) -> None:
            self.post_message(self.Progressed(done, total, who))

        try:
            result = provision(project, workspace, progress=progress)
        except (ProvisionError, OSError) as exc:
            self.call_later(self.notify, f"provisioning failed: {exc}", severity="error")
            return
        self.post_message(self.Built(result))

    @on(Progressed)
    def _progressed(self, message: Progressed) -> None:
        self.query_one("#prov-progress", ProgressBar).update(total=message.total, progress=message.done)

    @on(Built)
    def _built(self, message: Built) -> None:
        kits = self._result_table("Kits", "kit", "kind", "status", "folder")
        for kit in message.result.kits:
            kits.add_row(*map(literal, (kit.name, kit.kind, kit.status, str(kit.kit_dir),)))
        kits.border_subtitle = str(message.result.prod_dir)
        self.notify(f"{len(message.result.kits)} kits in {message.result.prod_dir}", title="Provisioned")

