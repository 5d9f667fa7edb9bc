"""`flctl job logs ID`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(job_id: Annotated[str, typer.Argument(metavar="ID")],
            site: Annotated[str, typer.Option("--site", help="Only this site (or 'server').")] = "",
            follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job "
                                                                        "ends.")] = False,
            kit: KitOption = None, _context: ContextOption = None, json_out: JsonOption = False) -> None:
    """Print a job's logs: the server's workflow log and each site's training output."""
    import json
    import sys

    with connect(kit) as admin:
        for entry in admin.logs(job_id, site, follow):
            if json_out:
                sys.stdout.write(json.dumps({"site": entry.site, "time": entry.time, "line": entry.line}) + "\n")
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(entry.time))
                terminal.peer_line(f"{stamp} [{entry.site}] ", entry.line)
            sys.stdout.flush()
