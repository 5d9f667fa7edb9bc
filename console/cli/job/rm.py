"""`flctl job rm ID`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(job_id: Annotated[str, typer.Argument(metavar="ID")], kit: KitOption = None, _context: ContextOption = None,
            json_out: JsonOption = False) -> None:
    """Remove an ended job from the server: its folder (bundle, models, logs) and its records. A job that is
    still waiting or running is refused (exit 1): abort it first. Needs the rights to manage and download it."""
    with connect(kit) as admin:
        message = admin.delete_job(job_id)
    if json_out:
        terminal.print_json({"id": job_id, "removed": True})
        return
    terminal.success(message)
