"""What the console looks like, at 80x24 and 120x40: SVG snapshots under __snapshots__ (pytest-textual-snapshot).

Update after an intended change with: python -m pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from flctl.console.tui.dialogs.confirm import Confirm
from flctl.console.tui.dialogs.identity import IdentityDialog
from flctl.console.tui.screens.deployment import DeploymentScreen
from flctl.console.tui.screens.job import JobScreen
from flctl.console.tui.screens.provision import ProvisionScreen
from flctl.console.tui.widgets.metric_plot import MetricPlot

from ..conftest import ROOT
from .driving import online, recorded_app, until
from .recorded_admin import RecordedAdmin

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
Compare = Callable[..., bool]


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths shown on screen are relative to the repository."""
    monkeypatch.chdir(ROOT)


async def steady(pilot: Pilot[Any]) -> None:
    """Stop the text cursors blinking, so that a screenshot does not depend on when it is taken."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES)
def test_overview(snap_compare: Compare, size: tuple[int, int]) -> None:
    """Sites and jobs, connected."""
    assert snap_compare(recorded_app(RecordedAdmin()), terminal_size=size, run_before=online)


@pytest.mark.parametrize("size", SIZES)
def test_job_screen(snap_compare: Compare, size: tuple[int, int]) -> None:
    """A running job: progress, per-site state, the accuracy plot and the logs."""

    async def open_job(pilot: Pilot[Any]) -> None:
        await online(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen)
                    and pilot.app.screen.query_one(MetricPlot).metric and pilot.app.screen.query_one("#job-log")
                    .line_count == 3)  # type: ignore[attr-defined]

    assert snap_compare(recorded_app(RecordedAdmin()), terminal_size=size, run_before=open_job)


@pytest.mark.parametrize("size", SIZES)
def test_abort_confirmation(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The abort dialog over the overview."""

    async def ask(pilot: Pilot[Any]) -> None:
        await online(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, Confirm))

    assert snap_compare(recorded_app(RecordedAdmin()), terminal_size=size, run_before=ask)


def test_who_am_i(snap_compare: Compare) -> None:
    """The identity dialog."""

    async def ask(pilot: Pilot[Any]) -> None:
        await online(pilot)
        await pilot.press("i")
        await until(pilot, lambda: isinstance(pilot.app.screen, IdentityDialog))

    assert snap_compare(recorded_app(RecordedAdmin()), run_before=ask)


@pytest.mark.parametrize("size", SIZES)
def test_provision_problems(snap_compare: Compare, size: tuple[int, int]) -> None:
    """A project.yml with three mistakes: each with its line."""

    async def open_project(pilot: Pilot[Any]) -> None:
        await online(pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProvisionScreen))
        pilot.app.screen.load(Path("tests/tui/projects/broken.yml"))  # type: ignore[attr-defined]
        await steady(pilot)

    assert snap_compare(recorded_app(RecordedAdmin()), terminal_size=size, run_before=open_project)


def test_provision_participants(snap_compare: Compare) -> None:
    """A valid project.yml: its participants, ready to provision."""

    async def open_project(pilot: Pilot[Any]) -> None:
        await online(pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProvisionScreen))
        pilot.app.screen.load(Path("playbooks/projects/local.yml"))  # type: ignore[attr-defined]
        await steady(pilot)

    assert snap_compare(recorded_app(RecordedAdmin()), terminal_size=(120, 40), run_before=open_project)


@pytest.mark.parametrize("size", SIZES)
def test_deployment_screen(snap_compare: Compare, size: tuple[int, int]) -> None:
    """D: a playbook's participants, their states and the reason of the one that failed; the interrupted run."""

    async def open_playbook(pilot: Pilot[Any]) -> None:
        await online(pilot)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(pilot.app.screen, DeploymentScreen))
        pilot.app.screen.load(Path("tests/tui/projects/deploy/hospitals.yml"))  # type: ignore[attr-defined]
        await steady(pilot)

    assert snap_compare(recorded_app(RecordedAdmin()), terminal_size=size, run_before=open_playbook)
