"""Where the console stands with the server: the connection bar shows it, the app changes it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ConnectionState(StrEnum):
    """The console's link to the server (also the connection bar's style class, `-online`...)."""

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Connection:
    """Where the console stands with the server."""

    state: ConnectionState
    target: str
    detail: str = ""
