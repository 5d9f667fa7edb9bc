"""`flctl job abort ID`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(job_id: Annotated[str, typer.Argument(metavar="ID")], kit: KitOption = None, _context: ContextOption = None,
            json_out: JsonOption = False) -> None:
    """Abort a job: the workflow and every site's job and training processes stop within seconds."""
    with connect(kit) as admin:
        job = admin.abort_job(job_id)
    if json_out:
        terminal.print_json(job.to_json())
        return
    terminal.success(f"job {job.id} is {job.status}")
