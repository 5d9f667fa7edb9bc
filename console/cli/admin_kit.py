"""Which admin identity a command uses: --kit, else $FLCTL_KIT, else the local federation's admin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes
from flctl.console.cli.terminal import abort

if TYPE_CHECKING:  # grpc is heavy: the client is imported when a command connects, not for --help
    from flctl.node.admin.admin_client import AdminClient

KitOption = Annotated[
    Path | None,
    typer.Option("--kit", metavar="DIR", help="Admin startup kit to act as [default: $FLCTL_KIT, else the local "
                 "federation's admin].",
                 file_okay=False, show_default=False),
]


def resolve_kit(kit: Path | None) -> Path:
    if kit is not None:
        return kit
    env = os.environ.get("FLCTL_KIT")
    if env:
        return Path(env)
    from flctl.cloud.local_plan import admin_kit, default_workspace

    local = admin_kit(default_workspace())
    if local is not None:
        return local
    abort("no admin kit given; pass --kit DIR (an admin's startup kit), set FLCTL_KIT or prepare a local "
          "federation with `flctl poc prepare`", exit_codes.BAD_INPUT)


def connect(kit: Path | None) -> AdminClient:
    """An AdminClient for the chosen kit (imported lazily: grpc is heavy)."""
    from flctl.node.admin.admin_client import AdminClient

    return AdminClient.from_kit(resolve_kit(kit))
