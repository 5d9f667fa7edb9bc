"""Deployment: a playbook's or an inventory's hosts with their state and why not further, live during a rollout;
play (deploy, for an inventory), check, upgrade and stop (each asking first but check, which changes nothing),
status, and a host's deploy log.

The same code as `flctl play` and `flctl deploy` (flctl.cloud.play, flctl.cloud.fleet) runs in this screen's
worker; what it reports arrives as messages. A playbook's journal is also followed while no action of this screen
runs, so a `flctl play` in another terminal shows here as it goes. The actions need the right `operate` at every
host's organisation (deployment_subject.refusal): a read-only admin sees the screen and is told why not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from flctl.console.tui.deployment_subject import (
    HostRow,
    Subject,
    inventory_rows,
    open_subject,
    plan_rows,
    play_rows,
    refusal,
    result_rows,
)
from flctl.console.tui.widgets.connection_bar import ConnectionBar
from flctl.console.tui.widgets.hosts_table import HostsTable
from flctl.console.visible_text import visible_value
from flctl.node.security.authz import Actor

if TYPE_CHECKING:
    from flctl.cloud.deploy_executor import HostResult, Progress
    from flctl.cloud.play import Observer
    from flctl.cloud.play_state import Event, PlayState
    from flctl.cloud.targets.base import Deployment

FOLLOW_EVERY_S = 1.0
# A host counts as up in a playbook (verified, healthy) or an inventory (running, deployed, unchanged).
SETTLED_STATES = frozenset({"verified", "healthy", "running", "deployed", "unchanged"})
"""How often an opened playbook's journal is read again while this screen runs nothing itself."""
LOG_LINES = 200


class DeploymentScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "play", "Play"),
        Binding("k", "check", "Check"),
        Binding("u", "upgrade", "Upgrade"),
        Binding("x", "stop", "Stop"),
        Binding("l", "log", "Log"),
        # Not in the footer, so that every key hint fits 80 columns: in the README and the placeholder.
        Binding("t", "status", "Status", show=False),
        Binding("ctrl+o", "open", "Open", show=False),
    ]

    class PlayEvent(Message):
        """`flctl play` recorded an event."""

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    class Phase(Message):
        """The running action entered a phase, or said something on its way."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class HostChanged(Message):
        """A host's state changed during upgrade, stop, status or deploy."""

        def __init__(self, participant: str, state: str, reason: str = "") -> None:
            super().__init__()
            self.participant, self.state, self.reason = participant, state, reason

    class Done(Message):
        """The action ended: its summary, and the rows to show now (None: keep those shown)."""

        def __init__(self, summary: str, rows: list[HostRow] | None = None, failed: bool = False) -> None:
            super().__init__()
            self.summary, self.rows, self.failed = summary, rows, failed

    def __init__(self, path: Path | None = None, operator: Callable[[], Actor | None] = lambda: None,
                 accept_new_host_keys: bool = False) -> None:
        super().__init__()
        self.start_path = path
        self.operator = operator
        self.accept_new_host_keys = accept_new_host_keys
        self.subject: Subject | None = None
        self.rows: list[HostRow] = []
        self.state: PlayState | None = None
        self.running = ""  # the action this screen runs now ("" when none)
        self._journal_seen: tuple[float, int] | None = None

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBar(id="connection")
        path = Input(str(self.start_path or ""), id="deploy-path",
                     placeholder="a playbook or an inventory (enter; ctrl+o browses; t: status)")
        path.border_title = "playbook or inventory"
        yield path
        hosts = HostsTable(id="hosts")
        hosts.border_title = "Hosts"
        yield hosts
        detail = Static("", id="host-detail", markup=False)  # a host's reason: not markup
        detail.display = False
        yield detail
        yield Static("open a playbook (flctl play) or an inventory (flctl deploy)", id="deploy-status",
                     markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "deployment"
        self.set_interval(FOLLOW_EVERY_S, self._follow_journal)
        if self.start_path is not None:
            self.load(self.start_path)
        else:
            self.query_one("#deploy-path", Input).focus()

    # ------------------------------------------------------------------ opening
    @on(Input.Submitted, "#deploy-path")
    def _typed(self, event: Input.Submitted) -> None:
        self.load(Path(event.value).expanduser())

    def action_open(self) -> None:
        from flctl.console.tui.dialogs.path_picker import PathPicker

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.load(path)

        self.app.push_screen(PathPicker("Open a playbook or an inventory", want="file"), chosen)

    def load(self, path: Path) -> None:
        """Read `path` (a playbook or an inventory) and show its hosts; a problem is told with its line."""
        from flctl.cloud.deploy_errors import DeployError
        from flctl.provisioner.errors import ProvisionError

        self.query_one("#deploy-path", Input).value = str(path)
        try:
            subject = open_subject(path)
        except (ProvisionError, DeployError, OSError) as exc:
            self._say(f"{path}: {exc}".replace("\n", "; "))
            self.notify(f"{path} cannot be opened: {exc}", severity="error")
            return
        self.subject = subject
        self._journal_seen = None
        if subject.playbook is not None:
            self._read_journal()
        else:
            from flctl.cloud.inventory import load_inventory

            self.state = None
            self._show(inventory_rows(load_inventory(path)))
            self._say(f"inventory of {len(self.rows)} hosts: t asks each one's status")
        self.query_one(HostsTable).focus()

    def _read_journal(self) -> None:
        """The playbook's state from its journal, read without changing it (a run may be writing it)."""
        from flctl.cloud.play import Journal, PlayError

        assert self.subject is not None and self.subject.playbook is not None
        try:
            self.state = Journal(self.subject.playbook.journal, mend=False).state
        except PlayError as exc:
            self._say(str(exc))
            return
        self._show(play_rows(self.subject.playbook, self.state))
        self._say(self._play_summary())

    def _follow_journal(self) -> None:
        """While nothing runs here, a play run elsewhere (`flctl play` in another terminal) shows as it goes."""
        if self.running or self.subject is None or self.subject.playbook is None:
            return
        try:
            stat = self.subject.playbook.journal.stat()
        except OSError:
            return
        seen = (stat.st_mtime, stat.st_size)
        if seen != self._journal_seen:
            self._journal_seen = seen
            self._read_journal()

    # ------------------------------------------------------------------ showing
    def _show(self, rows: list[HostRow]) -> None:
        rows = visible_value(rows)  # a host's reason may quote what it printed
        self.rows = rows
        table = self.query_one(HostsTable)
        table.show(rows)
        self._show_detail()
        if self.subject is not None:
            table.border_title = f"Hosts of {self.subject.kind} {self.subject.path.name}"
            settled = sum(r.state in SETTLED_STATES for r in rows)
            table.border_subtitle = f"{settled} of {len(rows)} up" + (f", {self.running} running" if self.running
                                                                     else "")

    @on(DataTable.RowHighlighted, "#hosts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted host's reason in full, under the table (a long sentence does not fit its cell)."""
        detail = self.query_one("#host-detail", Static)
        chosen = self.query_one(HostsTable).selected
        row = next((r for r in self.rows if r.participant == chosen), None)
        detail.display = bool(row and row.reason)
        if row and row.reason:
            detail.update(f"{row.participant}: {row.reason}")

    def _say(self, text: str) -> None:
        self.query_one("#deploy-status", Static).update(text)

    def _play_summary(self) -> str:
        if self.state is None:
            return ""
        verified = sum(p.state == "verified" and not p.reason for p in self.state.participants.values())
        text = f"{verified} of {len(self.rows)} verified"
        if self.state.interrupted:
            text += f"; the last run was interrupted during {self.state.interrupted}: r goes on from there"
        return text

    @on(PlayEvent)
    def _play_event(self, message: PlayEvent) -> None:
        from flctl.cloud.play_state import PlayState, step

        assert self.subject is not None and self.subject.playbook is not None
        self.state = step(self.state or PlayState(), message.event)
        self._show(play_rows(self.subject.playbook, self.state))

    @on(Phase)
    def _phase(self, message: Phase) -> None:
        self._say(f"{self.running}: {message.text}")

    @on(HostChanged)
    def _host_changed(self, message: HostChanged) -> None:
        self._show([HostRow(r.participant, r.host, message.state, message.reason)
                    if r.participant == message.participant else r for r in self.rows])

    @on(Done)
    def _done(self, message: Done) -> None:
        self.running = ""
        if message.rows is not None:
            self._show(message.rows)
        else:
            self._show(self.rows)
        self._say(message.summary)
        self.notify(message.summary, title="Deployment", severity="error" if message.failed else "information")

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        """Back to the overview; an action still running goes on to its end (a play's states keep being recorded,
        and D shows them again)."""
        if self.running:
            self.notify(f"{self.running} goes on in the background; D shows its hosts again", severity="warning")
        self.app.pop_screen()

    def _may(self, what: str, changes: bool = True) -> bool:
        """Whether `what` may start now: a subject open, nothing else running, the right to operate (when it
        changes anything); else the reason is told."""
        if self.subject is None:
            self.notify("open a playbook or an inventory first", severity="warning")
            return False
        if self.running:
            self.notify(f"{self.running} is still running; wait for it to end", severity="warning")
            return False
        if changes:
            why = refusal(self.operator(), self.subject.orgs, what)
            if why is not None:
                self.notify(why, title="Not permitted", severity="error")
                return False
        return True

    def _ask(self, what: str, question: str, detail: str, run: Callable[[], object]) -> None:
        from flctl.console.tui.dialogs.confirm import Confirm

        def answered(yes: bool | None) -> None:
            if yes and not self.running:
                self.running = what
                self._say(f"{what}: starting")
                run()

        self.app.push_screen(Confirm(question, detail), answered)

    def action_play(self) -> None:
        subject = self.subject
        if subject is None or subject.playbook is None:
            if self._may("deploy"):
                assert self.subject is not None
                self._ask("deploy", f"Deploy every host of {self.subject.path.name}?",
                          "Installs, starts or restarts each host's node where its kit or flctl changed.",
                          self.deploy_inventory)
            return
        if self._may("play"):
            self._ask("play", f"Play {subject.path.name}?", "Provisions when the project changed, rolls out every "
                      "host that needs it, waits healthy and runs the smoke jobs.", self.play)

    def action_check(self) -> None:
        if self._may("check", changes=False):
            self.running = "check"
            self._say("check: planning (nothing is changed)")
            self.check()

    def action_upgrade(self) -> None:
        if self._may("upgrade") and self._rolled_out("upgrade"):
            self._ask("upgrade", "Upgrade every host that runs a release?", "Each moves to the current kit and "
                      "flctl, one at a time; one left unhealthy is rolled back.", lambda: self.fleet_call("upgrade"))

    def action_stop(self) -> None:
        if self._may("stop") and self._rolled_out("stop"):
            self._ask("stop", "Stop the node on every host?", "The federation stops; the installs stay.",
                      lambda: self.fleet_call("stop"))

    def action_status(self) -> None:
        if self._may("status", changes=False) and self._rolled_out("status"):
            self.running = "status"
            self._say("status: asking every host")
            self.fleet_call("status")

    def action_log(self) -> None:
        participant = self.query_one(HostsTable).selected
        if participant is None:
            self.notify("no host selected", severity="warning")
            return
        if self._may("log", changes=False) and self._rolled_out("log"):
            self._say(f"reading {participant}'s deploy log")
            self.read_log(participant)

    def _rolled_out(self, what: str) -> bool:
        """A playbook's hosts are known to `flctl deploy` once a play wrote STATE/inventory.yml."""
        assert self.subject is not None
        if self.subject.inventory_file is None and self.subject.playbook is not None:
            rolled = self.subject.playbook.state_dir / "inventory.yml"
            if not rolled.is_file():
                self.notify(f"{what}: nothing was rolled out from this playbook yet; r plays it", severity="warning")
                return False
            self.subject.inventory_file = rolled
        return True

    # ------------------------------------------------------------------ workers
    def _observer(self) -> Observer:
        from flctl.cloud.play import Observer

        screen = self

        class Forward(Observer):
            def phase(self, text: str) -> None:
                screen.post_message(screen.Phase(text))

            def event(self, event: Event) -> None:
                screen.post_message(screen.PlayEvent(event))

            def check_row(self, participant: str, name: str, status: str, sentence: str) -> None:
                if status != "ok":
                    screen.post_message(screen.Phase(f"{participant}: pre-flight {name}: {sentence}"))

        return Forward()

    def _progress(self) -> Progress:
        from flctl.cloud.deploy_executor import Progress

        screen = self

        class Forward(Progress):
            def host_connected(self, host: Any) -> None:
                screen.post_message(screen.HostChanged(host.participant, "connected"))

            def step_done(self, host: Any, step: Any) -> None:
                screen.post_message(screen.HostChanged(host.participant, "working", f"{step.detail}: done"))

            def host_done(self, result: HostResult) -> None:
                screen.post_message(screen.HostChanged(result.participant, result.status, result.message))

        return Forward()

    def _failed(self, what: str, exc: BaseException) -> None:
        self.post_message(self.Done(f"{what} failed: {exc}".replace("\n", "; "), failed=True))

    def _passphrase(self) -> bytes | None:
        assert self.subject is not None and self.subject.playbook is not None
        var = self.subject.playbook.spec.passphrase_env
        return os.environ[var].encode() if var and os.environ.get(var) else None

    @work(thread=True, exclusive=True, group="deployment")
    def play(self) -> None:
        """`flctl play` over the playbook, read again first (an edit since it was opened counts)."""
        from flctl.cloud.deploy_errors import DeployError
        from flctl.cloud.play import run
        from flctl.cloud.playbook import load_playbook
        from flctl.provisioner.errors import ProvisionError

        assert self.subject is not None
        try:
            playbook = load_playbook(self.subject.path)
            self.subject.playbook = playbook
            result = run(playbook, self._observer(), self.accept_new_host_keys, self._passphrase())
        except (DeployError, ProvisionError, OSError) as exc:
            self._failed("play", exc)
            return
        rows = play_rows(playbook, result.state)
        verified = sum(r.state == "verified" and not r.reason for r in rows)
        summary = "play: nothing to do, every participant is verified and healthy" if result.nothing_to_do else \
            f"play: {verified} of {len(rows)} verified" + "".join(
                f"; {g['participant']} removed (its node {g['node']})" for g in result.removed)
        self.subject.inventory_file = playbook.state_dir / "inventory.yml"
        self.post_message(self.Done(summary, rows, failed=not result.ok))

    @work(thread=True, exclusive=True, group="deployment")
    def check(self) -> None:
        """`flctl play --check` (a playbook) or `flctl deploy --dry-run` (an inventory): nothing is changed."""
        from flctl.cloud.deploy_errors import DeployError
        from flctl.provisioner.errors import ProvisionError

        assert self.subject is not None
        try:
            if self.subject.playbook is not None:
                from flctl.cloud.play import check
                from flctl.cloud.playbook import load_playbook

                playbook = load_playbook(self.subject.path)
                provision, plan, jobs = check(playbook, self._passphrase(), self.accept_new_host_keys)
                rows = plan_rows(self.rows, plan)
                summary = "check (nothing changed): " + "; ".join(
                    [*(["would provision"] if provision else []), *(["would run " + ", ".join(jobs)] if jobs else []),
                     *([] if provision or jobs or any(p.actions or p.reason for p in plan) else ["no changes"])]
                    or ["see each host"])
                failed = any(p.reason for p in plan)
            else:
                results = {res.participant: res for res in self._inventory_plan()}
                rows = [HostRow(r.participant, r.host, results[r.participant].status,
                                "; ".join(results[r.participant].changes) if results[r.participant].ok
                                else results[r.participant].message) if r.participant in results else r
                        for r in self.rows]
                failed = any(not res.ok for res in results.values())
                summary = "check (nothing changed): " + ("some hosts could not be planned" if failed else
                                                         "each host's steps listed")
        except (DeployError, ProvisionError, OSError) as exc:
            self._failed("check", exc)
            return
        self.post_message(self.Done(summary, rows, failed))

    def _deployment(self, progress: bool = True) -> Deployment:
        from flctl.cloud.inventory import load_inventory
        from flctl.cloud.targets.base import Deployment

        assert self.subject is not None and self.subject.inventory_file is not None
        parallel = self.subject.playbook.spec.parallel if self.subject.playbook is not None else 4
        return Deployment(load_inventory(self.subject.inventory_file), self._progress() if progress else None,
                          parallel=parallel, accept_new_host_keys=self.accept_new_host_keys)

    def _inventory_plan(self) -> list[HostResult]:
        from flctl.cloud import fleet

        deployment = self._deployment(progress=False)
        results: list[HostResult] = []
        for provider, names in _by_target(deployment).items():
            results += fleet.plan(deployment, provider, names).hosts
        return results

    @work(thread=True, exclusive=True, group="deployment")
    def deploy_inventory(self) -> None:
        """`flctl deploy NAME INVENTORY` for each target of the inventory, the server's first."""
        from flctl.cloud import fleet
        from flctl.cloud.deploy_errors import DeployError
        from flctl.provisioner.errors import ProvisionError

        try:
            deployment = self._deployment()
            results: list[HostResult] = []
            for provider, names in _by_target(deployment).items():
                results += fleet.apply(deployment, provider, names).hosts
        except (DeployError, ProvisionError, OSError) as exc:
            self._failed("deploy", exc)
            return
        failed = [r for r in results if not r.ok]
        self.post_message(self.Done(f"deploy: {len(results) - len(failed)} of {len(results)} hosts deployed",
                                    result_rows(self.rows, results), bool(failed)))

    @work(thread=True, exclusive=True, group="deployment")
    def fleet_call(self, what: str) -> None:
        """`flctl deploy upgrade|stop|status` over the inventory (a playbook's: STATE/inventory.yml)."""
        from flctl.cloud import fleet
        from flctl.cloud.deploy_errors import DeployError
        from flctl.provisioner.errors import ProvisionError

        calls = {"upgrade": fleet.upgrade, "stop": fleet.stop, "status": fleet.status}
        try:
            results = calls[what](self._deployment())
        except (DeployError, ProvisionError, OSError) as exc:
            self._failed(what, exc)
            return
        failed = [r for r in results if not r.ok]
        outcome = ", ".join(f"{sum(r.status == s for r in results)} {s}" for s in dict.fromkeys(r.status
                                                                                               for r in results))
        self.post_message(self.Done(f"{what}: {outcome or 'no hosts'}", result_rows(self.rows, results),
                                    bool(failed)))

    @work(thread=True, group="deployment-log")
    def read_log(self, participant: str) -> None:
        """`flctl deploy logs INVENTORY HOST`: the end of its node's log and its supervisor's."""
        from flctl.cloud import fleet
        from flctl.cloud.deploy_errors import DeployError
        from flctl.console.tui.screens.deploy_log import DeployLogScreen
        from flctl.provisioner.errors import ProvisionError

        try:
            host, text = fleet.logs(self._deployment(progress=False), participant, LOG_LINES)
        except (DeployError, ProvisionError, OSError) as exc:
            self.app.call_from_thread(self.notify, f"{participant}'s log: {exc}", title="Failed", severity="error")
            return
        self.app.call_from_thread(self._say, f"{participant}'s deploy log: {len(text.splitlines())} lines")
        self.app.call_from_thread(self.app.push_screen, DeployLogScreen(host.participant, host.where, text))


def _by_target(deployment: Deployment) -> dict[str, list[str]]:
    """The inventory's participants by deploy target, the server's target first (as `flctl play` rolls out)."""
    from flctl.provisioner.errors import ProvisionError
    from flctl.provisioner.kit_info import read_kit

    def serves(participant: str) -> bool:
        try:
            return read_kit(deployment.inventory.kit(participant)).kind == "server"
        except (ProvisionError, OSError):
            return False

    out: dict[str, list[str]] = {}
    for host in sorted(deployment.inventory.hosts, key=lambda h: not serves(h.participant)):
        out.setdefault(host.provider, []).append(host.participant)
    return out
