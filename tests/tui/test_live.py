"""The console against a real local federation (real processes, gRPC over mTLS): submit, watch, reconnect."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Log

from flctl.console.tui.app import ConsoleApp
from flctl.console.tui.dialogs.path_picker import PathPicker
from flctl.console.tui.screens.job import JobScreen
from flctl.console.tui.widgets.metric_plot import MetricPlot
from flctl.node.admin.admin_client import AdminClient
from flctl.node.config.kit import load_kit

from ..conftest import ROOT
from ..federation import Federation
from .conftest import MEMBER
from .driving import lasting_notices, notices, synchronously, until

HELLO = ROOT / "playbooks" / "jobs" / "hello-numpy"


def console_for(kit: Path, downloads: Path) -> ConsoleApp:
    loaded = load_kit(kit, verify=True)
    return lasting_notices(ConsoleApp(lambda: AdminClient(loaded), loaded.target, downloads=downloads))


def online_sites(app: ConsoleApp) -> list[str]:
    return [s.name for s in app.sites if s.online]


@synchronously
async def test_submit_from_the_console_and_watch_to_finished(live_fed: Federation, tmp_path: Path) -> None:
    """hello-numpy submitted through the picker runs to FINISHED on screen, with a loss line per site and logs."""
    # Prepare
    app = console_for(live_fed.admin_kit, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection.state == "online" and online_sites(app) == live_fed.sites)
        before = {j.id for j in app.jobs}
        # Execute
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPicker))
        app.screen.query_one("#path").value = str(HELLO)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(pilot, lambda: {j.id for j in app.jobs} - before, timeout=30)
        job_id = ({j.id for j in app.jobs} - before).pop()
        app.open_job(job_id)
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        screen = app.screen
        await until(pilot, lambda: (job := app.job(job_id)) is not None and job.ended, timeout=90)
        plot = screen.query_one(MetricPlot)
        await until(pilot, lambda: len(plot.history.series("loss").get("site-2", [])) == 3, timeout=15)
        await until(pilot, lambda: screen.query_one(Log).line_count > 0, timeout=15)
        await pilot.press("d")
        await until(pilot, lambda: any(n.startswith("Downloaded") for n in notices(app)), timeout=30)
        job = app.job(job_id)
    # Assert
    assert job is not None and job.status == "FINISHED", live_fed.logs()
    assert sorted(plot.history.series("loss")) == ["site-1", "site-2"]
    assert [r for r, _ in plot.history.series("loss")["site-1"]] == [0, 1, 2]  # the server counts rounds from 0
    assert (tmp_path / job_id / "metrics.json").is_file() or any((tmp_path / job_id).iterdir())


@synchronously
async def test_a_member_is_told_not_permitted(live_fed: Federation, tmp_path: Path) -> None:
    """A member may look but not submit: the refusal is a 'Not permitted' notice and the console goes on."""
    # Prepare
    app = console_for(live_fed.kit(MEMBER[0]), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connection.state == "online" and app.sites)
        # Execute
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPicker))
        app.screen.query_one("#path").value = str(HELLO)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(pilot, lambda: any(n.startswith("Not permitted") for n in notices(app)), timeout=30)
        # Assert
        assert app.is_running and app.connection.state == "online"
        assert app.identity is not None and app.identity.role == "member"


@synchronously
async def test_the_console_says_when_the_server_goes_and_reconnects(live_fed: Federation, tmp_path: Path) -> None:
    """Stopping the server turns the bar to 'disconnected'; once it is back the console is online by itself."""
    # Prepare
    app = console_for(live_fed.admin_kit, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connection.state == "online" and online_sites(app) == live_fed.sites)
        # Execute
        live_fed.stop("localhost")
        await until(pilot, lambda: app.connection.state == "offline", timeout=30)
        shown = str(app.screen.query_one("#connection").render())
        live_fed.start("localhost")
        await until(pilot, lambda: app.connection.state == "online", timeout=60)
        await until(pilot, lambda: online_sites(app) == live_fed.sites, timeout=60)
    # Assert
    assert "disconnected from" in shown and "reconnecting" in shown
