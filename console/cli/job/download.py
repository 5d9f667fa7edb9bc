"""`flctl job download ID`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli import terminal
from console.cli.admin_kit import KitOption, connect
from console.cli.options import JsonOption


def command(job_id: Annotated[str, typer.Argument(metavar="ID")],
            out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                              help="Folder to unpack into (as OUT/ID/).")] = Path("."),
            kit: KitOption = None, json_out: JsonOption = False) -> None:
    """Download a job's artifacts: global models per round and final, metrics, logs, events."""
    with connect(kit) as admin:
        target = admin.download_job(job_id, out)
    if json_out:
        terminal.print_json({"id": job_id, "path": str(target)})
        return
    terminal.success(f"downloaded job {job_id} to {target}")
