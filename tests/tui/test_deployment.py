"""The console's deployment screen (D): a playbook's or inventory's hosts and their state, play, check, upgrade,
stop, status and a host's deploy log, over the same code as `flctl play` and `flctl deploy`, driven by key presses.
The runs here are real (provisioning, pre-flight over TCP to closed ports on 127.0.0.1, a local host's probe); the
federation the console watches is the recorded one (its admin's role is what the rights check reads)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log, Static

from flctl.console.tui.dialogs.confirm import Confirm
from flctl.console.tui.screens.deploy_log import DeployLogScreen
from flctl.console.tui.screens.deployment import DeploymentScreen
from flctl.node.admin.admin_types import Identity
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from ..conftest import ROOT
from ..federation import free_port, project_text
from .driving import notices, online, recorded_app, synchronously, until
from .recorded_admin import NOW, RecordedAdmin

RECORDED = ROOT / "tests" / "tui" / "projects" / "deploy" / "hospitals.yml"
PARTICIPANTS = ["localhost", "site-1", "site-2"]


class MemberAdmin(RecordedAdmin):
    """The recorded federation, seen by an admin whose role is member (view only)."""

    def whoami(self) -> Identity:
        self._called("whoami")
        return Identity("viewer@hub.org", "hub", "admin", "member", "fedtest", NOW + 200 * 86400)


def rows(screen: DeploymentScreen) -> list[list[str]]:
    table: DataTable[str] = screen.query_one("#hosts", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def status_line(screen: DeploymentScreen) -> str:
    return str(screen.query_one("#deploy-status", Static).render())


def unreachable_playbook(folder: Path) -> Path:
    """A playbook of a server and two sites over SSH at 127.0.0.1 ports nothing listens on, no smoke job."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yml").write_text(project_text("deploytest", free_port(), sites=2))
    hosts = "".join(f"    - {{participant: {name}, address: 127.0.0.1, port: {free_port()}, user: root, "
                    f"install_dir: /tmp/never}}\n" for name in PARTICIPANTS)
    (folder / "play.yml").write_text(f"api_version: 1\nproject: project.yml\njobs: []\ninventory:\n"
                                     f"  known_hosts: {folder / 'known_hosts'}\n  hosts:\n{hosts}")
    return folder / "play.yml"


async def open_screen(pilot: object, path: Path) -> DeploymentScreen:
    app = pilot.app  # type: ignore[attr-defined]
    await online(pilot)  # type: ignore[arg-type]
    await pilot.press("D")  # type: ignore[attr-defined]
    await until(pilot, lambda: isinstance(app.screen, DeploymentScreen))  # type: ignore[arg-type]
    screen = app.screen
    screen.load(path)
    await until(pilot, lambda: screen.query_one("#hosts", DataTable).row_count)  # type: ignore[arg-type]
    return screen  # type: ignore[no-any-return]


@synchronously
async def test_a_playbook_s_participants_show_their_state_and_why_not_further() -> None:
    """D opens the screen; a playbook's journal gives each participant's state, the reason of the one that failed,
    and the phase the last run was interrupted in."""
    # Prepare
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        # Execute
        screen = await open_screen(pilot, RECORDED)
        shown, line = rows(screen), status_line(screen)
        await pilot.press("escape")
        back = type(app.screen).__name__
    # Assert
    assert [r[:3] for r in shown] == [["fl.example.org", "10.0.0.1", "healthy"], ["st-marys", "10.0.1.7", "started"],
                                      ["charite", "10.0.2.9", "provisioned"]]
    assert shown[0][3] == shown[1][3] == "-"
    assert shown[2][3].startswith("pre-flight: cannot reach [10.0.2.9]:22")
    assert "0 of 3 verified" in line and "interrupted during rolling out 2 of 3 hosts" in line
    assert back == "OverviewScreen"


@synchronously
async def test_play_asks_first_then_runs_and_shows_each_state_as_it_is_reached(tmp_path: Path) -> None:
    """r asks; yes runs `flctl play`: the rows move as its events arrive (planned, then provisioned), and the
    hosts nothing answers end at provisioned with the pre-flight's sentence; the journal holds the same."""
    # Prepare
    playbook = unreachable_playbook(tmp_path / "fleet")
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(pilot, playbook)
        seen: list[list[str]] = []
        shown = screen._show

        def spy(new_rows: list[object]) -> None:
            seen.append([r.state for r in new_rows])  # type: ignore[attr-defined]
            shown(new_rows)  # type: ignore[arg-type]

        screen._show = spy  # type: ignore[method-assign]
        # Execute
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await until(pilot, lambda: any(n.startswith("Deployment: play:") for n in notices(app)), timeout=120)
        final = rows(screen)
    # Assert
    assert ["planned", "planned", "planned"] in seen and ["provisioned"] * 3 in seen
    assert seen.index(["planned"] * 3) < seen.index(["provisioned"] * 3)
    assert [r[2] for r in final] == ["provisioned"] * 3
    assert all(r[3].startswith("pre-flight:") and "cannot reach [127.0.0.1]" in r[3] for r in final), final
    assert "Deployment: play: 0 of 3 verified" in notices(app)
    journal = [json.loads(line) for line in (tmp_path / "fleet" / "play.play" / "events.jsonl").read_text().splitlines()
               if line]
    assert [e["kind"] for e in journal].count("failed") == 3


@synchronously
async def test_check_says_what_each_host_would_get_and_changes_nothing(tmp_path: Path) -> None:
    """k runs `flctl play --check` (no question: nothing changes): hosts nothing answers are not planned, said why."""
    # Prepare
    playbook = unreachable_playbook(tmp_path / "fleet")
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(pilot, playbook)
        # Execute
        await pilot.press("k")
        await until(pilot, lambda: any(n.startswith("Deployment: check") for n in notices(app)), timeout=120)
        final = rows(screen)
    # Assert
    assert all(r[2] == "planned" and r[3].startswith("not planned: ") and "cannot reach" in r[3] for r in final)
    assert not (tmp_path / "fleet" / "play.play" / "events.jsonl").exists()


@pytest.mark.parametrize("key", ["r", "u", "x"])
@synchronously
async def test_a_member_sees_the_hosts_but_each_action_is_refused_with_the_reason(key: str, tmp_path: Path) -> None:
    """A member (view only) sees the rows; play, upgrade and stop are refused before anything is asked or run."""
    # Prepare
    folder = tmp_path / "deploy"
    shutil.copytree(RECORDED.parent, folder)
    journal = (folder / "hospitals.play" / "events.jsonl").read_bytes()
    app = recorded_app(MemberAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(pilot, folder / "hospitals.yml")
        # Execute
        await pilot.press(key)
        await pilot.pause(0.2)
        # Assert
        assert isinstance(app.screen, DeploymentScreen) and len(rows(screen)) == 3
    what = {"r": "play", "u": "upgrade", "x": "stop"}[key]
    assert (f"Not permitted: {what} needs the right operate on every host (fl.example.org: role 'member' lacks the "
            "right operate)") in notices(app)
    assert (folder / "hospitals.play" / "events.jsonl").read_bytes() == journal


def local_inventory(tmp_path: Path) -> tuple[Path, Path]:
    """An inventory of one site on this machine (provider local) over freshly provisioned kits; its install dir."""
    text = project_text("localdeploy", free_port(), sites=1)
    prod = provision(project_from_document(parse_yaml(text, "project.yml")).project, tmp_path / "ws").prod_dir
    install = tmp_path / "site-1"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(f"api_version: 1\nkits: {prod}\nhosts:\n  - {{participant: site-1, provider: local, "
                         f"user: me, python: {sys.executable}, install_dir: {install}}}\n")
    return inventory, install


@synchronously
async def test_status_and_a_host_s_deploy_log(tmp_path: Path) -> None:
    """t asks each host of an inventory its status (this one has nothing installed); l shows the end of its node's
    log (`flctl deploy logs`)."""
    # Prepare
    inventory, install = local_inventory(tmp_path)
    (install / "workspace").mkdir(parents=True)
    (install / "workspace" / "node.log").write_text("node started\nsite-1 registered with localhost\n")
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(pilot, inventory)
        before = rows(screen)
        # Execute
        await pilot.press("t")
        await until(pilot, lambda: any(n.startswith("Deployment: status") for n in notices(app)), timeout=60)
        after = rows(screen)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, DeployLogScreen), timeout=60)
        log = list(app.screen.query_one(Log).lines)
    # Assert
    assert before == [["site-1", "localhost", "-", "-"]]
    assert after == [["site-1", "localhost", "not installed", "site-1: nothing is deployed on localhost"]]
    assert log == [f"==> {install}/workspace/node.log <==", "node started", "site-1 registered with localhost"]


@synchronously
async def test_a_play_run_elsewhere_shows_as_its_journal_grows(tmp_path: Path) -> None:
    """While the screen runs nothing itself it follows the playbook's journal: an event another `flctl play`
    records (here: charite delivered, then st-marys verified) moves the rows within a second or two."""
    # Prepare
    from flctl.cloud.play import Journal

    folder = tmp_path / "deploy"
    shutil.copytree(RECORDED.parent, folder)
    app = recorded_app(RecordedAdmin())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(pilot, folder / "hospitals.yml")
        journal = Journal(folder / "hospitals.play" / "events.jsonl")
        # Execute
        journal.record("delivered", "charite", digest="d-charite")
        journal.record("verified", "st-marys", job="")
        await until(pilot, lambda: [r[2] for r in rows(screen)] == ["healthy", "verified", "delivered"], timeout=10)
        final, line = rows(screen), status_line(screen)
    # Assert
    assert final[2][3] == "-"  # charite's pre-flight failure is over
    assert "1 of 3 verified" in line


def test_who_may_act_is_the_right_operate_at_every_host_s_organisation() -> None:
    """A project_admin anywhere; an org_admin or a lead only where every host is of its own organisation (the
    first other one is named); a member nowhere; nobody known, nothing."""
    # Prepare
    from flctl.console.tui.deployment_subject import refusal
    from flctl.node.security.authz import Actor

    orgs = {"server": "hub", "site-1": "hub", "site-2": "org_2"}
    # Execute / Assert
    assert refusal(Actor("a", "hub", "project_admin"), orgs, "play") is None
    assert refusal(Actor("o", "hub", "org_admin"), {"server": "hub", "site-1": "hub"}, "stop") is None
    assert refusal(Actor("o", "hub", "org_admin"), orgs, "stop") == (
        "stop needs the right operate on every host (site-2: role 'org_admin' has operate only at sites of its own "
        "organisation (hub))")
    assert refusal(Actor("l", "org_2", "lead"), orgs, "upgrade") is not None
    assert refusal(Actor("m", "hub", "member"), orgs, "play") == (
        "play needs the right operate on every host (server: role 'member' lacks the right operate)")
    assert refusal(None, orgs, "play") is not None
