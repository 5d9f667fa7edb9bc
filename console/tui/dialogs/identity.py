"""Who this console acts as: name, organisation, role, project and when the certificate expires; and what the
server asks its operator to know (a damaged audit tail it set aside)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from flctl.console.tui import cells
from flctl.node.admin.admin_types import Identity


class IdentityDialog(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,i", "dismiss", "Close")]

    def __init__(self, identity: Identity, now: float) -> None:
        super().__init__()
        self.identity = identity
        self.now = now

    def compose(self) -> ComposeResult:
        who = self.identity
        with Vertical(classes="dialog") as box:
            box.border_title = "Who am I"
            for key, value in (("name", who.name), ("organisation", who.org), ("role", who.role),
                               ("project", who.project), ("certificate expires", cells.expiry(who.not_after,
                                                                                                self.now))):
                yield Label(f"{key:>20}  {value}", markup=False)  # the server's words: not markup
            for notice in who.notices:
                yield Label(f"⚠ {notice}", classes="notice", markup=False)
            yield Label("escape closes", classes="detail")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
