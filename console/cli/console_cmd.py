"""`flctl console`: the live terminal UI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli.admin_kit import KitOption, resolve_kit


def command(kit: KitOption = None,
            out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", file_okay=False,
                                              help="Folder that downloaded jobs unpack into (as OUT/ID/).")]
            = Path(".")) -> None:
    """Open the live console: sites, jobs, rounds, metric plots and logs; submit, abort, download, provision."""
    from flctl.console.tui.app import ConsoleApp
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.config.kit import load_kit

    loaded = load_kit(resolve_kit(kit), verify=True)
    AdminClient(loaded).close()  # refuses a kit that is not an admin's, before the screen opens
    ConsoleApp(lambda: AdminClient(loaded), loaded.target, downloads=out).run()
