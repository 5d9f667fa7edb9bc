"""Every console action, driven by key presses and the command palette over a recorded federation."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

from textual.widgets import DataTable, Label, Log

from flctl.console.tui.app import ConsoleApp
from flctl.console.tui.dialogs.confirm import Confirm
from flctl.console.tui.dialogs.identity import IdentityDialog
from flctl.console.tui.dialogs.path_picker import PathPicker
from flctl.console.tui.screens.job import JobScreen
from flctl.console.tui.screens.overview import OverviewScreen
from flctl.console.tui.screens.site_logs import SiteLogsScreen
from flctl.console.tui.widgets.connection_bar import ConnectionBar
from flctl.console.tui.widgets.jobs_table import JobsTable
from flctl.console.tui.widgets.metric_plot import MetricPlot
from flctl.console.tui.widgets.sites_table import SitesTable
from flctl.node import errors
from flctl.node.admin.admin_types import Identity

from ..conftest import ROOT
from .driving import notices, online, recorded_app, synchronously, until
from .recorded_admin import NOW, RecordedAdmin

HELLO = ROOT / "playbooks" / "jobs" / "hello-numpy"


def rows(table: DataTable[str]) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


@synchronously
async def test_overview_lists_sites_and_jobs_newest_first() -> None:
    """The overview shows each site's state, heartbeat, jobs and expiry, and each job's round n/m."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    # Execute
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        sites = rows(app.screen.query_one("#sites", DataTable))
        jobs = rows(app.screen.query_one("#jobs", DataTable))
    # Assert
    assert sites[0][:5] == ["site-1", "org_1", "online", "2s ago", "a1b2c3"]
    assert sites[1][:5] == ["site-2", "org_2", "offline", "1m35s ago", "-"]
    assert sites[1][5].endswith("(in 12d)")
    assert [j[:4] for j in jobs] == [["a1b2c3", "cifar10-fedavg", "RUNNING", "2/5"],
                                     ["9f8e7d", "hello-numpy", "FINISHED", "3/3"],
                                     ["c4d5e6", "stats", "SUBMITTED", "-"]]
    assert jobs[0][5] == "1m15s"


@synchronously
async def test_enter_opens_the_job_with_its_rounds_plot_and_logs() -> None:
    """Enter on a job opens its screen: round progress, one plot line per site, and its log lines."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query_one(Log).line_count)
        plot = app.screen.query_one(MetricPlot)
        await until(pilot, lambda: plot.metric)
        first = plot.metric
        await pilot.press("m")
        # Assert
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == "a1b2c3"
        assert "RUNNING" in str(app.screen.query_one("#job-title", Label).render())
        assert plot.history.series("loss") == {"site-1": [(1, 1.0), (2, 0.5)], "site-2": [(1, 1.2), (2, 0.6)]}
        assert (first, plot.metric) == ("accuracy", "loss")
        assert list(app.screen.query_one(Log).lines)[1] == "14:12:11 [site-1] epoch 1 loss=1.000"
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)


@synchronously
async def test_submit_picks_a_folder_and_submits_it(tmp_path: Path) -> None:
    """s opens the folder picker; the chosen folder goes to submit_job and a notice names the new job."""
    # Prepare
    admin = RecordedAdmin()
    app = recorded_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPicker))
        app.screen.query_one("#path").value = str(HELLO)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(pilot, lambda: admin.submitted)
        await until(pilot, lambda: any("d7e8f9" in n for n in notices(app)))
    # Assert
    assert admin.submitted == [HELLO]


@synchronously
async def test_picker_refuses_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    """A file where a folder is wanted keeps the picker open and says why."""
    # Prepare
    (tmp_path / "note.txt").write_text("x")
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPicker))
        # Execute
        app.screen.query_one("#path").value = str(tmp_path / "note.txt")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        # Assert
        assert isinstance(app.screen, PathPicker)
        assert "is not a folder" in str(app.screen.query_one("#problem", Label).render())
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)


@synchronously
async def test_refused_actions_show_not_permitted_and_the_console_goes_on() -> None:
    """A member's submit, abort and download come back as 'Not permitted' notices, not a crash."""
    # Prepare
    admin = RecordedAdmin(refuse=frozenset({"submit_job", "abort_job", "download_job"}))
    app = recorded_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PathPicker))
        app.screen.query_one("#path").value = str(HELLO)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await pilot.press("d")
        await until(pilot, lambda: sum(n.startswith("Not permitted") for n in notices(app)) == 3)
        # Assert
        assert app.is_running and isinstance(app.screen, OverviewScreen)
        assert any("may not abort job" in n for n in notices(app))


@synchronously
async def test_abort_asks_first() -> None:
    """a asks for confirmation: n leaves the job alone, y aborts it."""
    # Prepare
    admin = RecordedAdmin()
    app = recorded_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        declined = [c for c in admin.calls if c[0] == "abort_job"]
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await until(pilot, lambda: any(c[0] == "abort_job" for c in admin.calls))
    # Assert
    assert declined == []
    assert ("abort_job", ("a1b2c3",)) in admin.calls


@synchronously
async def test_download_unpacks_into_the_chosen_folder(tmp_path: Path) -> None:
    """d downloads the highlighted job into --out and says where."""
    # Prepare
    admin = RecordedAdmin()
    app = recorded_app(admin, downloads=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("down", "d")
        await until(pilot, lambda: any(n.startswith("Downloaded") for n in notices(app)))
    # Assert
    assert ("download_job", ("9f8e7d", tmp_path)) in admin.calls
    assert any(str(tmp_path / "9f8e7d") in n for n in notices(app))


@synchronously
async def test_site_logs_show_only_that_site() -> None:
    """l on a site opens its log lines in the job it runs."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        app.screen.query_one("#sites").focus()
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, SiteLogsScreen) and app.screen.query_one(Log).line_count)
        lines = list(app.screen.query_one(Log).lines)
    # Assert
    assert lines == ["14:12:11 [site-1] epoch 1 loss=1.000"]


@synchronously
async def test_job_screen_opens_a_site_s_logs() -> None:
    """On a job's screen, l opens the highlighted site's logs."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        # Execute
        app.screen.query_one("#job-sites").focus()
        await pilot.press("down", "l")
        await until(pilot, lambda: isinstance(app.screen, SiteLogsScreen) and app.screen.query_one(Log).line_count)
        # Assert
        assert list(app.screen.query_one(Log).lines) == ["14:12:12 [site-2] epoch 1 loss=1.200"]


@synchronously
async def test_who_am_i_from_a_key_and_from_the_palette() -> None:
    """i, and 'Who am I' in the command palette, show name, role and certificate expiry."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, IdentityDialog))
        text = " ".join(str(label.render()) for label in app.screen.query(Label))
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"who am")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, IdentityDialog))
    # Assert
    assert "admin@hub.org" in text and "project_admin" in text and "2027-04-09" in text


@synchronously
async def test_palette_opens_a_job() -> None:
    """The command palette lists each job: choosing one opens its screen."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("ctrl+p")
        await pilot.press(*"job 9f8e")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        # Assert
        assert app.screen.job_id == "9f8e7d"  # type: ignore[attr-defined]


class DownAdmin(RecordedAdmin):
    """A server that cannot be reached."""

    def whoami(self) -> Identity:
        raise errors.ConnectionFailed("cannot reach the server at localhost:8443; is it running?")


@synchronously
async def test_unreachable_server_is_shown_and_retried_until_it_answers() -> None:
    """While the server cannot be reached the bar says so; the console reconnects once it answers."""
    # Prepare
    server_up = threading.Event()
    attempts: list[int] = []

    def connect() -> RecordedAdmin:
        attempts.append(1)
        return RecordedAdmin().connect() if server_up.is_set() else DownAdmin()

    app = ConsoleApp(connect, "localhost:8443", clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        # Execute
        await until(pilot, lambda: app.connection.state == "offline" and len(attempts) >= 2)
        bar = str(app.screen.query_one("#connection").render())
        server_up.set()
        await until(pilot, lambda: app.connection.state == "online")
    # Assert
    assert "disconnected from localhost:8443; reconnecting" in bar
    assert "cannot reach the server" in bar


@synchronously
async def test_leaving_a_job_ends_its_streams() -> None:
    """Escape from a running job's screen closes its log and event streams: no reader thread is left behind."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await online(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query_one(Log).line_count)
        streams = [w for w in app.workers if w.group in ("log", "rounds")]
        # Execute
        await pilot.press("escape")
        await until(pilot, lambda: all(w.is_finished for w in streams))
        # Assert
        assert len(streams) == 2
        assert isinstance(app.screen, OverviewScreen)


@synchronously
async def test_the_server_s_notices_show_on_the_top_line_and_in_who_am_i() -> None:
    """A damaged audit tail the server set aside: the top line counts its notices, `i` shows each sentence."""
    # Prepare
    notice = ("the audit log audit.jsonl had a damaged tail (12 bytes after record 7), found at start at "
              "2026-12-04 10:00:00 UTC; it is kept as audit.damaged-x.jsonl and the log goes on")

    class Noticed(RecordedAdmin):
        def whoami(self) -> Identity:
            plain = super().whoami()
            return Identity(plain.name, plain.org, plain.kind, plain.role, plain.project, plain.not_after, (notice,))

    app = recorded_app(Noticed())
    async with app.run_test(size=(100, 30)) as pilot:
        await online(pilot)
        # Execute
        bar = app.screen.query_one(ConnectionBar)
        await until(pilot, lambda: "notice" in str(bar.render()))
        top = str(bar.render())
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, IdentityDialog))
        text = " ".join(str(label.render()) for label in app.screen.query(Label))
    # Assert
    assert "1 notice from the server (i)" in top
    assert "audit.damaged-x.jsonl" in text


@synchronously
async def test_an_ended_job_s_screen_shows_its_cross_site_evaluation() -> None:
    """A finished job with a cross_site_eval report: its screen asks for the job's details and shows the matrix."""
    # Prepare
    admin = RecordedAdmin()
    finished = admin.jobs[0] = dataclasses.replace(admin.jobs[0], reports={"cross_site_eval": {
        "models": ["global", "site-1"], "sites": ["site-1", "site-2"], "missing": {},
        "metrics": {"site-1": {"global": {"acc": 0.9}, "site-1": {"acc": 0.95}}, "site-2": {"global": {"acc": 0.8}}}}})
    app = recorded_app(admin)
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        # Execute
        app.push_screen(JobScreen(finished.id))
        await until(pilot, lambda: isinstance(app.screen, JobScreen)
                    and any(table.row_count == 2 for table in app.screen.query("#job-cross-site").results(DataTable)))
        table = app.screen.query_one("#job-cross-site", DataTable)
        # Assert
        assert table.display
        assert [str(c.label) for c in table.columns.values()] == ["site \\ model", "global", "site-1"]
        assert rows(table) == [["site-1", "acc=0.9", "acc=0.95"], ["site-2", "acc=0.8", "-"]]
        assert ("get_job", (finished.id,)) in admin.calls


@synchronously
async def test_enter_opens_a_job_whichever_table_has_focus() -> None:
    """After Tab moves the focus to the sites table, enter opens the job the highlighted site runs."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("tab")
        focused = app.focused
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        # Assert
        assert focused is not None and focused.id == "sites"
        assert app.screen.job_id == "a1b2c3"  # type: ignore[attr-defined]  # site-1 runs it


@synchronously
async def test_while_disconnected_live_values_are_last_known_and_dimmed() -> None:
    """Once the server stops answering, the overview shows what it last knew as such: states read 'was online',
    heartbeat ages and durations stop counting, the tables are dimmed and say how long ago they were true."""
    # Prepare
    clock = [NOW]
    down = threading.Event()
    recorded = RecordedAdmin()
    sessions: list[RecordedAdmin] = []

    def connect() -> RecordedAdmin:
        if down.is_set():
            return DownAdmin()
        sessions.append(recorded.connect())
        return sessions[-1]

    app = ConsoleApp(connect, "localhost:8443", clock=lambda: clock[0])  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        # Execute: the server goes away, and 72 s pass
        down.set()
        for session in sessions:
            session.close()
        await until(pilot, lambda: app.connection.state == "offline")
        clock[0] = NOW + 72
        await pilot.pause(1.3)  # the console's one-second tick
        sites, jobs = app.screen.query_one(SitesTable), app.screen.query_one(JobsTable)
        rows = {key: [str(cell) for cell in sites.get_row(key)] for key in ("site-1", "site-2")}
        running = [str(cell) for cell in jobs.get_row("a1b2c3")]
        bar = str(app.screen.query_one("#connection").render())
    # Assert
    assert [rows["site-1"][2:4], rows["site-2"][2:4]] == [["was online", "2s ago"], ["was offline", "1m35s ago"]]
    assert running[-1] == "1m15s"  # the duration as of the last contact, not 72 s more
    assert sites.has_class("-stale") and jobs.has_class("-stale")
    assert sites.border_subtitle == "last known 1m12s ago: 1/2 online"
    assert "showing what was known 1m12s ago" in bar


@synchronously
async def test_c_switches_the_federation_context_and_the_top_line_says_which() -> None:
    """`c` lists the contexts; picking another connects as its kit: back on the overview, only the other
    federation's sites and jobs, and the top line names the context."""
    # Prepare: context "b" is a federation with one site of its own and no jobs
    other = RecordedAdmin()
    other.sites = [dataclasses.replace(other.sites[0], name="b-site")]
    other.jobs = []
    opened: list[str] = []

    def open_context(name: str) -> tuple[object, str]:
        opened.append(name)
        return other.connect, "b-server:8443"

    app = ConsoleApp(RecordedAdmin().connect, "localhost:8443", clock=lambda: NOW, context="a",  # type: ignore[arg-type]
                     contexts=lambda: ["a", "b"], open_context=open_context)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        first_bar = str(app.screen.query_one("#connection").render())
        # Execute
        await pilot.press("c")
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.context_name == "b" and app.connection.state == "online"
                    and [s.name for s in app.sites] == ["b-site"])
        await pilot.pause(0.3)
        bar = str(app.screen.query_one("#connection").render())
        shown = [str(app.screen.query_one(SitesTable).get_row_at(i)[0])
                 for i in range(app.screen.query_one(SitesTable).row_count)]
        screen = app.screen
    # Assert
    assert opened == ["b"]
    assert "context a" in first_bar
    assert "connected to b-server:8443" in bar and "context b" in bar
    assert shown == ["b-site"] and app.jobs == []
    assert isinstance(screen, OverviewScreen)


@synchronously
async def test_a_job_whose_loss_diverged_is_shown_with_its_nan_and_inf_left_out_of_the_plot() -> None:
    """Rounds whose loss is NaN at site-1 and infinite at site-2: the job's screen opens and the plot says how many
    values it leaves out (plotext failed on them, and the console with it)."""
    # Prepare
    admin = RecordedAdmin()
    for event in admin.events["a1b2c3"]:
        event.data["metrics"]["site-1"]["loss"] = math.nan
        event.data["metrics"]["site-2"]["loss"] = math.inf
    app = recorded_app(admin)
    async with app.run_test(size=(120, 40)) as pilot:
        await online(pilot)
        # Execute
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query_one(Log).line_count)
        plot = app.screen.query_one(MetricPlot)
        while plot.metric != "loss":
            await pilot.press("m")
        await pilot.pause(0.2)
        # Assert
        assert app.is_running and isinstance(app.screen, JobScreen)
        assert plot.history.series("loss")["site-1"][0][1] != plot.history.series("loss")["site-1"][0][1]  # NaN
        assert plot.caption == "loss per site (4 nan/inf not drawn)"
