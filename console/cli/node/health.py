"""`flctl node health KIT [--workspace W] [--live]`: a container's health check and Kubernetes' probes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.node.start import WorkspaceOpt, workspace_for
from flctl.console.cli.options import JsonOption


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="The server's or a site's startup kit.")],
    workspace: WorkspaceOpt = None,
    live: Annotated[bool, typer.Option("--live", help="Only check that the node started from KIT runs "
                                                     "(a liveness probe).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Exit 0 when the node of KIT is healthy, else 1 with one line saying why.

    Ready (the default): the server answers a TLS handshake with the project's CA on its port on this
    machine (a server's kit), or the server the kit names does (a site's kit: it can reach its server).
    With --live: the node started from KIT (with this --workspace) is running.
    """
    from flctl.cloud import node_probe

    ok, why = node_probe.alive(workspace_for(kit, workspace)) if live else node_probe.ready(kit)
    if json_out:
        terminal.print_json({"kit": str(kit), "probe": "live" if live else "ready", "healthy": ok, "why": why})
        if not ok:
            raise typer.Exit(exit_codes.FAILED)
        return
    if not ok:
        terminal.abort(why, exit_codes.FAILED)
    terminal.info(why)
