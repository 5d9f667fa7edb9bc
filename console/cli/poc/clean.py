"""`flctl poc clean [-w DIR]`."""

from __future__ import annotations

from console.cli import terminal
from console.cli.options import JsonOption
from console.cli.poc.workspace import PocWorkspaceOption, local_errors, resolve


def command(workspace: PocWorkspaceOption = None, json_out: JsonOption = False) -> None:
    """Remove the local federation's folder (kits, logs, job results); refused while it runs."""
    from cloud.local import clean

    root = resolve(workspace)
    with local_errors():
        clean(root)
    if json_out:
        terminal.print_json({"removed": str(root)})
    else:
        terminal.success(f"removed {root}")
