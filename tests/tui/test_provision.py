"""The provisioning screen: read a project.yml, show its participants or its problems, make real kits."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from flctl.console.tui.screens.provision import ProvisionScreen

from ..conftest import LOCAL_PROJECT
from .driving import notices, online, recorded_app, synchronously, until
from .recorded_admin import RecordedAdmin

BROKEN = Path(__file__).parent / "projects" / "broken.yml"


def column(table: DataTable[str], index: int) -> list[str]:
    return [str(table.get_row_at(i)[index]) for i in range(table.row_count)]


@synchronously
async def test_problems_are_listed_with_their_lines() -> None:
    """A project.yml with three mistakes lists each with its line and field; nothing can be provisioned."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ProvisionScreen))
        # Execute
        app.screen.query_one("#project", Input).value = str(BROKEN)
        await pilot.press("enter")
        await pilot.pause()
        problems = app.screen.query_one("#prov-result", DataTable)
        lines, fields = column(problems, 0), column(problems, 1)
        await pilot.press("ctrl+b")
        await pilot.pause()
    # Assert
    assert lines == ["3", "6", "8"]
    assert fields == ["server.port", "sites[1].name", "admins[0].role"]
    assert any("open a valid project.yml first" in n for n in notices(app))


@synchronously
async def test_provisioning_makes_the_kits_and_lists_them(tmp_path: Path) -> None:
    """Opening a valid project shows its participants; ctrl+b provisions them with progress and lists the kits."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ProvisionScreen))
        screen = app.screen
        assert isinstance(screen, ProvisionScreen)
        screen.query_one("#workspace", Input).value = str(tmp_path / "ws")
        screen.load(LOCAL_PROJECT)
        await pilot.pause()
        people = column(screen.query_one("#participants", DataTable), 0)
        # Execute
        await pilot.press("ctrl+b")
        await until(pilot, lambda: any(n.startswith("Provisioned") for n in notices(app)), timeout=60)
        kits = screen.query_one("#prov-result", DataTable)
        names, folders = column(kits, 0), column(kits, 3)
        progress = screen.query_one("#prov-progress")
    # Assert
    assert people == ["localhost", "site-1", "site-2", "admin@localhost"]
    assert sorted(names) == sorted(people)
    assert all((Path(f) / "startup" / "signature.json").is_file() for f in folders)
    assert progress.percentage == 1.0  # type: ignore[attr-defined]
