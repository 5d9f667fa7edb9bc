"""`flctl console`: the live terminal UI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli.admin_kit import ContextOption, KitOption, chosen_context, resolve_kit

if TYPE_CHECKING:
    from flctl.node.admin.admin_client import AdminClient


def command(kit: KitOption = None, _context: ContextOption = None,
            out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", file_okay=False,
                                              help="Folder that downloaded jobs unpack into (as OUT/ID/).")]
            = Path(".")) -> None:
    """Open the live console: sites, jobs, rounds, metric plots and logs; submit, abort, download, provision; `c`
    switches federation context; `D` opens deployment (a playbook's or inventory's hosts: play, check, upgrade,
    stop, logs)."""
    from flctl.cloud import federation_contexts
    from flctl.console.tui.app import ConsoleApp

    def contexts() -> list[str]:
        return sorted(federation_contexts.load().kits)

    def open_context(name: str) -> tuple[Callable[[], AdminClient], str]:
        return _opened(federation_contexts.load().kit(name))

    admin_kit = resolve_kit(kit)
    connect_, target = _opened(admin_kit)
    ConsoleApp(connect_, target, downloads=out, context=chosen_context(kit), contexts=contexts,
               open_context=open_context, admin_kit=admin_kit).run()


def _opened(kit: Path) -> tuple[Callable[[], AdminClient], str]:
    """How to connect as the admin kit `kit`, and its server's address; a kit that is not an admin's, or fails its
    signature, is refused here, before any screen opens."""
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.config.kit import load_kit

    loaded = load_kit(kit, verify=True)
    AdminClient(loaded).close()  # refuses a kit that is not an admin's
    return lambda: AdminClient(loaded), loaded.target
