"""`flctl poc clean [-w DIR]`."""

from __future__ import annotations

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption
from flctl.console.cli.poc.workspace import PocWorkspaceOption, local_errors, resolve


def command(workspace: PocWorkspaceOption = None, json_out: JsonOption = False) -> None:
    """Remove the local federation's folder (kits, logs, job results); refused while it runs."""
    from flctl.cloud.local import clean
    from flctl.cloud.local_context import forget

    root = resolve(workspace)
    with local_errors():
        clean(root)
    forget(root)
    if json_out:
        terminal.print_json({"removed": str(root)})
    else:
        terminal.success(f"removed {root}")
