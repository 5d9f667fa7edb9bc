"""`flctl job ls`."""

from __future__ import annotations

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(kit: KitOption = None, _context: ContextOption = None, json_out: JsonOption = False) -> None:
    """List jobs: id, name, status, rounds done, submitter and duration."""
    from flctl.console.cli.job.render import duration, progress

    with connect(kit) as admin:
        jobs = admin.list_jobs()
    if json_out:
        terminal.print_json([j.to_json() for j in jobs])
        return
    terminal.table(["id", "name", "status", "round", "submitter", "duration"],
                   [(j.id, j.name, j.status, progress(j), j.submitter, duration(j)) for j in jobs])
