"""`flctl poc prepare [-n SITES] [-w DIR] [--port P]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption
from flctl.console.cli.poc.workspace import PocWorkspaceOption, local_errors, resolve


def command(
    sites: Annotated[int, typer.Option("--sites", "-n", min=1, max=64, help="How many sites (site-1..site-N).")] = 2,
    workspace: PocWorkspaceOption = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, show_default=False,
                                             help="The server's port on 127.0.0.1 [default: a free one].")] = None,
    json_out: JsonOption = False,
) -> None:
    """Provision a local federation: a server on 127.0.0.1, N sites and an admin (admin@localhost).

    Start it with `flctl poc start`; while it exists, `flctl job …` acts as its admin by default. The folder is
    remembered (in $XDG_CONFIG_HOME/flctl/, else ~/.config/flctl/): later commands find it without
    -w or FLCTL_POC_WORKSPACE, until another is prepared or it is cleaned.
    """
    from flctl.cloud.local import prepare
    from flctl.cloud.local_context import remember

    root = resolve(workspace)
    with local_errors():
        state = prepare(root, sites, port)
    remember(root)  # the commands that default to the local federation find it without FLCTL_POC_WORKSPACE
    admin = state.admin_kit(root)
    if json_out:
        terminal.print_json({"workspace": str(root), "port": state.port, "sites": state.sites,
                             "admin_kit": str(admin)})
        return
    terminal.success(f"prepared a local federation of {len(state.sites)} sites in {root} (port {state.port}); "
                     "start it with `flctl poc start`")
