"""`flctl console`: the live terminal UI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli.admin_kit import KitOption, resolve_kit


def command(kit: KitOption = None,
            out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", file_okay=False,
                                              help="Folder that downloaded jobs unpack into (as OUT/ID/).")]
            = Path(".")) -> None:
    """Open the live console: sites, jobs, rounds, metric plots and logs; submit, abort, download, provision."""
    from console.tui.app import ConsoleApp
    from node.admin_client import AdminClient
    from node.kit import load_kit

    loaded = load_kit(resolve_kit(kit), verify=True)
    AdminClient(loaded).close()  # refuses a kit that is not an admin's, before the screen opens
    ConsoleApp(lambda: AdminClient(loaded), loaded.target, downloads=out).run()
