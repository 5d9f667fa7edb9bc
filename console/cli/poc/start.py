"""`flctl poc start [-w DIR]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption
from flctl.console.cli.poc.workspace import PocWorkspaceOption, leave, local_errors, resolve


def command(
    workspace: PocWorkspaceOption = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for every site to come "
                                                                     "online.")] = 30.0,
    json_out: JsonOption = False,
) -> None:
    """Start the local federation's server and sites in the background; wait until every site is online.

    Each node runs `flctl node start KIT` in a session of its own; the sites start together with the
    server and connect as soon as it listens. PID files go to WORKSPACE/run/, logs to WORKSPACE/logs/.
    Exit code 1 when a node exits while starting, 5 when the sites do not come online in time.
    """
    from flctl.cloud.local import require_state, start, status

    root = resolve(workspace)
    with local_errors():
        state = require_state(root)
        seconds = start(root, state, timeout, on_step=None if json_out else terminal.info)
    nodes = status(root, state)
    if json_out:
        terminal.print_json({"workspace": str(root), "seconds": round(seconds, 3),
                             "nodes": [{"name": n.name, "pid": n.pid, "log": str(n.log)} for n in nodes]})
    else:
        terminal.success(f"server and {len(state.sites)} sites online in {seconds:.2f} s; submit a job with "
                         "`flctl job submit JOB --watch`, stop with `flctl poc stop`")
    leave()
