"""`flctl node stop KIT`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.node.start import WorkspaceOpt, workspace_for
from flctl.console.cli.options import JsonOption


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="The kit the node was started from.")],
    workspace: WorkspaceOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop.")] = 20.0,
    json_out: JsonOption = False,
) -> None:
    """Stop the node started from KIT (SIGTERM, then wait for it to exit)."""
    from flctl.node.process import pidfile

    ws = workspace_for(kit, workspace)
    pid, stale = pidfile.find(ws)
    if pid is None and stale:
        pidfile.discard(ws)  # never signal a process that is not this node
        terminal.abort(f"no node is running from {kit} (not running: {stale}); removed the stale PID file",
                       exit_codes.FAILED)
    if pid is None:
        terminal.abort(f"no node is running from {kit} (not running: no PID file {ws / pidfile.NAME})",
                       exit_codes.FAILED)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pidfile.alive(pid):
            if json_out:
                terminal.print_json({"stopped": True, "pid": pid})
            else:
                terminal.success(f"stopped the node (process {pid})")
            return
        time.sleep(0.1)
    terminal.abort(f"process {pid} did not stop within {timeout:.0f} s; end it with `kill -9 {pid}`",
                   exit_codes.TIMED_OUT)
