"""One line, on every screen: whether the server is reachable, where it is, and who we are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.widgets import Static

from flctl.console.tui.cells import age
from flctl.console.tui.connection import Connection, ConnectionState
from flctl.node.admin.admin_types import Identity

if TYPE_CHECKING:
    from flctl.console.tui.app import ConsoleApp


class ConnectionBar(Static):
    """Shows the app's connection state; styled by the -online / -offline / -connecting class. Its text quotes the
    server and its errors: shown as written, never read as markup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, markup=False, **kwargs)

    def on_mount(self) -> None:
        app = cast("ConsoleApp", self.app)
        self.watch(app, "connection", self._show, init=True)
        self.watch(app, "identity", self._show_identity, init=False)
        self.watch(app, "now", self._tick, init=False)

    def _tick(self, now: float) -> None:
        if cast("ConsoleApp", self.app).stale:
            self._show(cast("ConsoleApp", self.app).connection)

    def _show_identity(self, identity: Identity | None) -> None:
        self._show(cast("ConsoleApp", self.app).connection)

    def _show(self, connection: Connection) -> None:
        identity = cast("ConsoleApp", self.app).identity
        context = cast("ConsoleApp", self.app).context_name
        who = (f"{identity.name} ({identity.role})" if identity else "") + (f"  context {context}" if context else "")
        for state in ConnectionState:
            self.set_class(connection.state == state, f"-{state}")
        if connection.state == ConnectionState.ONLINE:
            text = f"● connected to {connection.target}  {who}"
            if identity and identity.notices:
                count = len(identity.notices)
                text += f"  ⚠ {count} notice{'s' if count > 1 else ''} from the server (i)"
        elif connection.state == ConnectionState.OFFLINE:
            app = cast("ConsoleApp", self.app)
            known = (f"; showing what was known {age(app.now - app.last_contact)} ago" if app.last_contact
                     else "")
            text = f"○ disconnected from {connection.target}{known}; reconnecting… {connection.detail}"
        else:
            text = f"◌ connecting to {connection.target}…" + (f"  context {context}" if context else "")
        self.update(text)
