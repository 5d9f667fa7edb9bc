"""A statistics job on the console's job screen: a feature's statistics for one site beside the global figures, its
histogram plotted, the site compared and the feature chosen by key (`s`, `f`). Snapshots under __snapshots__.

Update after an intended change with: python -m pytest tests/tui/test_statistics_screen.py --snapshot-update
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from flctl.console.tui.screens.job import JobScreen
from flctl.console.tui.widgets.statistics_panel import StatisticsPanel
from flctl.node.admin.admin_types import JobInfo, JobSite
from flctl.node.jobs.job_status import JobStatus

from ..conftest import ROOT
from ..test_statistics import EXACT, run_statistics, statistics_site
from .driving import online, recorded_app, synchronously, until
from .recorded_admin import NOW, RecordedAdmin

Compare = Callable[..., bool]
JOB = "5747a1"


def statistics_admin() -> RecordedAdmin:
    """The recorded federation with a finished statistics job over two sites' fixed data."""
    rng = np.random.default_rng(5)
    data = {"site-1": {"age": rng.normal(55, 10, 300).round(), "bmi": rng.normal(26, 4, 300)},
            "site-2": {"age": rng.normal(65, 8, 500).round(), "bmi": rng.normal(28, 5, 500)}}
    report = run_statistics({"statistics": {"count": {}, "mean": {}, "stddev": {}, "min": {}, "max": {},
                                            "histogram": {"*": {"bins": 10}}}},
                            {name: statistics_site(name, values, EXACT) for name, values in data.items()})
    admin = RecordedAdmin()
    admin.jobs.append(JobInfo(id=JOB, name="patient-statistics", status=JobStatus.FINISHED, submitter="admin@hub.org",
                              submitter_org="hub", submitted_at=NOW - 60, started_at=NOW - 58, ended_at=NOW - 50,
                              round=0, rounds=0, workflow="statistics", min_sites=2,
                              sites=[JobSite("site-1", "done", 0, ""), JobSite("site-2", "done", 0, "")],
                              reports={"statistics": report}))
    return admin


async def open_statistics(pilot: Pilot[Any]) -> None:
    await online(pilot)
    await pilot.app.push_screen(JobScreen(JOB))
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen)
                and pilot.app.screen.query_one(StatisticsPanel).display)
    pilot.app.screen.query_one("#stats-table").focus()
    await pilot.pause(0.3)


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@synchronously
async def test_keys_choose_the_site_and_the_feature() -> None:
    """`s` compares the next site with the global figures, `f` shows the next feature."""
    app = recorded_app(statistics_admin())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_statistics(pilot)
        table = pilot.app.screen.query_one("#stats-table", DataTable)
        first = [str(c.label) for c in table.columns.values()]
        await pilot.press("s")
        second = [str(c.label) for c in table.columns.values()]
        await pilot.press("f")
        title = table.border_title
    assert first == ["statistic", "site-1", "global"]
    assert second == ["statistic", "site-2", "global"]
    assert title == "Statistics: bmi (2/2)"


def test_statistics_job_screen(snap_compare: Compare) -> None:
    """A finished statistics job: age at site-2 beside the global figures, and its histogram."""

    async def compare_site_2(pilot: Pilot[Any]) -> None:
        await open_statistics(pilot)
        await pilot.press("s")
        await pilot.pause(0.3)

    assert snap_compare(recorded_app(statistics_admin()), terminal_size=(120, 40), run_before=compare_site_2)
