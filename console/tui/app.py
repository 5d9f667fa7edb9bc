"""The console application: owns the admin client, follows the server's event stream, runs actions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import get_current_worker

from flctl.console.tui.admin_api import Admin, Connect
from flctl.console.tui.connection import Connection, ConnectionState
from flctl.console.tui.stream_client import StreamClient
from flctl.console.tui.visible_admin import visible_connect
from flctl.console.visible_text import visible
from flctl.node import errors
from flctl.node.admin.admin_types import Event, Identity, JobInfo, SiteInfo

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from flctl.node.security.authz import Actor

T = TypeVar("T")
OpenContext = Callable[[str], tuple[Connect, str]]
"""A context's name -> (a way to connect as its admin kit, the server's address); raises with one sentence."""
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
SITES_EVERY_S = 3.0
"""Sites have no events of their own: their heartbeats are re-read on every event and on this slow timer."""


class ConsoleApp(App[None]):
    """flctl console: the federation's sites and jobs, live, and the actions an admin may take."""

    CSS_PATH = "app.tcss"
    TITLE = "flctl console"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "submit", "Submit"),
        # Not in the footer (at 80 columns it would push `q Quit` out): in the command palette (ctrl+p) and the README.
        Binding("i", "whoami", "Who am I", show=False),
        Binding("p", "provision", "Provision", show=False),
        Binding("c", "switch_context", "Context", show=False),
        Binding("D", "deployment", "Deployment", show=False),
        Binding("q", "quit", "Quit"),
    ]

    connection: reactive[Connection] = reactive(Connection(ConnectionState.CONNECTING, ""), always_update=True)
    jobs: reactive[list[JobInfo]] = reactive(list, always_update=True)
    sites: reactive[list[SiteInfo]] = reactive(list, always_update=True)
    identity: reactive[Identity | None] = reactive(None)
    now: reactive[float] = reactive(0.0)
    last_contact: float = 0.0
    """When the server last answered (the clock's time): while disconnected, live values are shown as of then."""

    class EventArrived(Message):
        """The server's event stream delivered an event (any job's)."""

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    def __init__(self, connect: Connect, target: str, clock: Callable[[], float] = time.time,
                 downloads: Path = Path("."), context: str = "", contexts: Callable[[], list[str]] | None = None,
                 open_context: OpenContext | None = None, admin_kit: Path | None = None) -> None:
        super().__init__()
        self.admin_kit = admin_kit
        """The admin kit the console acts with (who may deploy is read from it before the server answers)."""
        self.deployment_path: Path | None = None
        """The playbook or inventory the deployment screen last opened."""
        self.context_name = context
        """The federation context the console acts in ("" when it was given a kit)."""
        self._contexts = contexts
        self._open_context = open_context
        self.theme = "ansi-dark"
        self._connect = visible_connect(connect)  # no screen shows a control sequence a peer sent
        self._admin: Admin | None = None
        self._admin_lock = threading.Lock()
        self._stopping = threading.Event()
        self._refresh_pending = False
        self.clock = clock
        self.downloads = downloads
        self.set_reactive(ConsoleApp.connection, Connection(ConnectionState.CONNECTING, target))
        self.set_reactive(ConsoleApp.now, clock())

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notification shown as written: never read as markup (a refusal's text may quote a peer, whose
        `[link=...]` would become a link), every control character as its escape (flctl.console.visible_text).
        Every screen's and widget's `notify` comes here; `markup` is taken and not used."""
        super().notify(visible(message), title=visible(title), severity=severity, timeout=timeout, markup=False)

    # ------------------------------------------------------------------ life
    def on_mount(self) -> None:
        from flctl.console.tui.screens.overview import OverviewScreen

        self.push_screen(OverviewScreen())
        self.follow_federation()
        self.set_interval(SITES_EVERY_S, self.refresh_sites)
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        self._stopping.set()
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()

    def _tick(self) -> None:
        self.now = self.clock()

    @property
    def stale(self) -> bool:
        """Whether what the console holds is only last known (the server is not answering)."""
        return self.connection.state != ConnectionState.ONLINE

    @property
    def shown_now(self) -> float:
        """The time live values are shown as of: now while connected, the last contact while not (heartbeat ages
        and durations stop counting instead of pretending to be current)."""
        return self.last_contact if self.stale and self.last_contact else self.now

    def _heard(self) -> None:
        self.last_contact = self.clock()

    @property
    def admin(self) -> Admin:
        """The current client; a fresh one after the server went away."""
        if self._stopping.is_set():
            raise errors.ConnectionFailed("the console is closing")
        with self._admin_lock:
            if self._admin is None:
                self._admin = self._connect()
            return self._admin

    def stream_client(self) -> StreamClient:
        """A client for one long-lived stream, closed by whoever follows it."""
        return StreamClient(self._connect)

    def _drop_admin(self) -> None:
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
            self._admin = None

    # ------------------------------------------------------------------ the live feed
    @work(thread=True, exclusive=True, group="feed", name="federation feed")
    def follow_federation(self) -> None:
        """Read jobs, sites and identity, then follow every job's events; on failure, say so and reconnect."""
        worker = get_current_worker()
        after, delay = 0, RETRY_FIRST_S
        while not worker.is_cancelled and not self._stopping.is_set():
            try:
                admin = self.admin
                identity, jobs, sites = admin.whoami(), admin.list_jobs(), admin.list_sites()
                self.call_later(self._loaded, identity, jobs, sites)
                delay = RETRY_FIRST_S
                for event in admin.watch(after_seq=after):
                    after = event.seq
                    self.post_message(self.EventArrived(event))
                    if worker.is_cancelled:
                        return
                if self._stopping.is_set() or worker.is_cancelled:
                    return
                self.call_later(self._went_away, "the server closed the event stream")
            except errors.NotPermitted as exc:
                self.call_later(self._went_away, f"not permitted to watch: {exc}")
            except errors.NodeError as exc:
                if self._stopping.is_set() or worker.is_cancelled:
                    return
                self.call_later(self._went_away, str(exc))
            self._drop_admin()
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RETRY_MAX_S)

    def _loaded(self, identity: Identity, jobs: list[JobInfo], sites: list[SiteInfo]) -> None:
        self._heard()
        self.connection = Connection(ConnectionState.ONLINE, self.connection.target)
        self.identity = identity
        self.jobs = jobs
        self.sites = sites
        self.now = self.clock()

    def _went_away(self, detail: str) -> None:
        if self.connection.state == ConnectionState.ONLINE:
            self.notify(f"lost the server: {detail}; reconnecting", title="Disconnected", severity="warning")
        self.connection = Connection(ConnectionState.OFFLINE, self.connection.target, detail)

    @on(EventArrived)
    def _on_event(self, message: EventArrived) -> None:
        if not self._refresh_pending:
            self._refresh_pending = True
            self.set_timer(0.2, self._refresh_after_events)

    def _refresh_after_events(self) -> None:
        self._refresh_pending = False
        self.refresh_jobs()
        self.refresh_sites()

    @work(thread=True, exclusive=True, group="jobs")
    def refresh_jobs(self) -> None:
        try:
            jobs = self.admin.list_jobs()
        except errors.NodeError:
            return  # the feed reports a lost server
        self.call_later(self._heard)
        self.call_later(setattr, self, "jobs", jobs)

    @work(thread=True, exclusive=True, group="sites")
    def refresh_sites(self) -> None:
        if self.connection.state != ConnectionState.ONLINE:
            return
        try:
            sites = self.admin.list_sites()
        except errors.NodeError:
            return
        self.call_later(self._heard)
        self.call_later(setattr, self, "sites", sites)

    # ------------------------------------------------------------------ actions
    def call_admin(self, what: str, call: Callable[[Admin], T], done: Callable[[T], Any] | None = None) -> None:
        """Run one blocking admin call in a thread; report refusals and failures as notifications."""

        def run() -> None:
            try:
                result = call(self.admin)
            except errors.NotPermitted as exc:
                self.call_later(self.notify, f"{what}: {exc}", title="Not permitted", severity="error")
            except errors.NodeError as exc:
                self.call_later(self.notify, f"{what}: {exc}", title="Failed", severity="error")
            else:
                if done is not None:
                    self.call_later(done, result)

        self.run_worker(run, thread=True, group="actions", name=what)

    def job(self, job_id: str) -> JobInfo | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    def action_submit(self) -> None:
        from flctl.console.tui.dialogs.path_picker import PathPicker

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.call_admin(f"submit {folder.name}", lambda a: a.submit_job(folder),
                                lambda job_id: self.notify(f"submitted {folder.name} as job {job_id}",
                                                           title="Submitted"))

        self.push_screen(PathPicker("Submit a job folder", want="folder"), chosen)

    def abort(self, job_id: str) -> None:
        from flctl.console.tui.dialogs.confirm import Confirm

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_admin(f"abort {job_id}", lambda a: a.abort_job(job_id),
                                lambda job: self.notify(f"job {job.id} is {job.status}", title="Abort"))

        self.push_screen(Confirm(f"Abort job {job_id}?", "Its sites stop at once; this cannot be undone."),
                         answered)

    def download(self, job_id: str) -> None:
        self.notify(f"downloading job {job_id}…")
        self.call_admin(f"download {job_id}", lambda a: a.download_job(job_id, self.downloads),
                        lambda path: self.notify(f"job {job_id} saved in {path}", title="Downloaded"))

    def open_job(self, job_id: str) -> None:
        from flctl.console.tui.screens.job import JobScreen

        self.push_screen(JobScreen(job_id))

    def open_site_logs(self, job_id: str, site: str) -> None:
        from flctl.console.tui.screens.site_logs import SiteLogsScreen

        self.push_screen(SiteLogsScreen(job_id, site))

    def action_switch_context(self) -> None:
        """Choose another federation context (`flctl context add`); the console then acts as its admin kit."""
        from flctl.console.tui.dialogs.choose_context import ChooseContext

        names = self._contexts() if self._contexts is not None else []
        if not names or self._open_context is None:
            self.notify("no federation contexts: add one with `flctl context add NAME KIT`", severity="warning")
            return

        def chosen(name: str | None) -> None:
            if name and name != self.context_name:
                self.run_worker(lambda: self._open(name), thread=True, group="context", name=f"context {name}")

        self.push_screen(ChooseContext(names, self.context_name), chosen)

    def _open(self, name: str) -> None:
        assert self._open_context is not None
        try:
            connect, target = self._open_context(name)
        except Exception as exc:  # noqa: BLE001 - a bad kit or config is told, the console stays where it is
            self.call_later(self.notify, f"context {name}: {exc}", title="Cannot switch", severity="error")
            return
        self.call_later(self._switched, name, connect, target)

    def _switched(self, name: str, connect: Connect, target: str) -> None:
        """Act in context `name` from now on: back to the overview, nothing of the old federation shown."""
        from flctl.console.tui.screens.overview import OverviewScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, OverviewScreen):
            self.pop_screen()
        self._connect = visible_connect(connect)
        self.context_name = name
        self.admin_kit = None  # the new context's identity comes from its server
        self.last_contact = 0.0
        self.identity = None
        self.jobs = []
        self.sites = []
        self.connection = Connection(ConnectionState.CONNECTING, target)
        self._drop_admin()  # ends the old feed's stream; the new feed (exclusive) cancels the old worker
        self.follow_federation()
        self.notify(f"now acting in context {name} ({target})", title="Context")

    def action_whoami(self) -> None:
        from flctl.console.tui.dialogs.identity import IdentityDialog

        self.call_admin("who am I", lambda a: a.whoami(),
                        lambda who: self.push_screen(IdentityDialog(who, self.clock())))

    def action_provision(self) -> None:
        from flctl.console.tui.screens.provision import ProvisionScreen

        if not isinstance(self.screen, ProvisionScreen):
            self.push_screen(ProvisionScreen())

    def action_deployment(self) -> None:
        from flctl.console.tui.screens.deployment import DeploymentScreen

        if not isinstance(self.screen, DeploymentScreen):
            self.push_screen(DeploymentScreen(self.deployment_path, operator=self.operator))

    def operator(self) -> Actor | None:
        """Who acts, for the rights a screen checks itself (deployment): the server's word once it answered, else
        the admin kit's certificate; None when neither is known."""
        from flctl.node.security.authz import Actor

        if self.identity is not None:
            return Actor(self.identity.name, self.identity.org, self.identity.role)
        if self.admin_kit is None:
            return None
        from flctl.provisioner.errors import ProvisionError
        from flctl.provisioner.kit_info import read_kit

        try:
            kit = read_kit(self.admin_kit)
        except (ProvisionError, OSError):
            return None
        return Actor(kit.name, kit.org, kit.role or "")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Submit a job", "Pick a job folder and submit it", self.action_submit)
        yield SystemCommand("Who am I", "This admin's identity, role and certificate expiry", self.action_whoami)
        yield SystemCommand("Provision a project", "Open a project.yml and make its kits", self.action_provision)
        yield SystemCommand("Deployment", "A playbook's or inventory's hosts: play, check, upgrade, stop, logs (D)",
                            self.action_deployment)
        yield SystemCommand("Switch federation context", "Act as another context's admin kit (c)",
                            self.action_switch_context)
        for job in self.jobs:
            yield SystemCommand(f"Open job {job.id} ({job.name})", f"{job.status}", lambda j=job.id: self.open_job(j))
            if not job.ended:
                yield SystemCommand(f"Abort job {job.id} ({job.name})", "Asks first", lambda j=job.id: self.abort(j))
            yield SystemCommand(f"Download job {job.id} ({job.name})", f"into {self.downloads}",
                                lambda j=job.id: self.download(j))
            for site in job.sites:
                yield SystemCommand(f"Logs of {site.name} in job {job.id}", site.state,
                                    lambda j=job.id, s=site.name: self.open_site_logs(j, s))
