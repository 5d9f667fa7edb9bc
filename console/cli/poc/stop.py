"""`flctl poc stop [-w DIR]`."""

from __future__ import annotations

import time

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption
from flctl.console.cli.poc.workspace import PocWorkspaceOption, leave, local_errors, resolve


def command(workspace: PocWorkspaceOption = None, json_out: JsonOption = False) -> None:
    """Stop every node of the local federation and everything they started; no process is left behind.

    Nodes get SIGTERM (they end their jobs and training scripts); whatever is left after 10 s is
    killed by PID.
    """
    from flctl.cloud.local import require_state, stop

    root = resolve(workspace)
    began = time.monotonic()
    with local_errors():
        killed = stop(root, require_state(root))
    seconds = time.monotonic() - began
    if json_out:
        terminal.print_json({"workspace": str(root), "seconds": round(seconds, 3), "killed": killed})
    else:
        if killed:
            terminal.warning(f"killed {len(killed)} processes that did not stop on SIGTERM: {killed}")
        terminal.success(f"local federation stopped in {seconds:.2f} s")
    leave()
