"""Which admin identity a command uses: --kit, else $FLCTL_KIT, else --context NAME, else $FLCTL_CONTEXT, else the
current context (`flctl context use`), else the local federation's admin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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


_chosen_context: list[str] = []
"""The --context NAME of the command line (set by its option's callback, before the command runs)."""


def _choose_context(_ctx: Any, _param: Any, value: str | None) -> None:
    _chosen_context[:] = [value] if value else []


ContextOption = Annotated[
    str | None,
    typer.Option("--context", metavar="NAME", expose_value=False, callback=_choose_context,
                 help="Act as the admin kit of this federation context (`flctl context ls`) [default: "
                      "$FLCTL_CONTEXT, else the current one]; --kit and $FLCTL_KIT win over it.",
                 show_default=False),
]


def resolve_kit(kit: Path | None) -> Path:
    if kit is not None:
        return kit
    env = os.environ.get("FLCTL_KIT")
    if env:
        return Path(env)
    from flctl.cloud.federation_contexts import chosen_kit

    chosen = chosen_kit(_chosen_context[0] if _chosen_context else None)
    if chosen is not None:
        return chosen
    from flctl.cloud.local_plan import admin_kit, default_workspace

    local = admin_kit(default_workspace())
    if local is not None:
        return local
    abort("no admin kit given; pass --kit DIR (an admin's startup kit), set FLCTL_KIT, add a context with "
          "`flctl context add NAME KIT`, or prepare a local federation with `flctl poc prepare`", exit_codes.BAD_INPUT)


def chosen_context(kit: Path | None) -> str:
    """The context a command acts in: '' when --kit or FLCTL_KIT name the kit, else --context, FLCTL_CONTEXT or
    the current context ('' when none)."""
    if kit is not None or os.environ.get("FLCTL_KIT"):
        return ""
    name = (_chosen_context[0] if _chosen_context else "") or os.environ.get("FLCTL_CONTEXT", "")
    if name:
        return name
    from flctl.cloud.federation_contexts import load

    return load().current


def connect(kit: Path | None) -> AdminClient:
    """An AdminClient for the chosen kit (imported lazily: grpc is heavy)."""
    from flctl.node.admin.admin_client import AdminClient

    return AdminClient.from_kit(resolve_kit(kit))
