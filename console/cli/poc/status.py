"""`flctl poc status [-w DIR] [--json]`."""

from __future__ import annotations

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption
from flctl.console.cli.poc.workspace import PocWorkspaceOption, local_errors, resolve


def command(workspace: PocWorkspaceOption = None, json_out: JsonOption = False) -> None:
    """Show each node of the local federation (pid, alive, log) and the sites the server sees online."""
    from flctl.cloud.local import require_state, sites_online, status

    root = resolve(workspace)
    with local_errors():
        state = require_state(root)
    nodes = status(root, state)
    online = sites_online(root, state) if any(n.alive for n in nodes) else None
    if json_out:
        terminal.print_json({"workspace": str(root), "port": state.port,
                             "nodes": [{"name": n.name, "pid": n.pid, "alive": n.alive, "log": str(n.log)}
                                       for n in nodes],
                             "sites_online": online or []})
        return
    terminal.table(["node", "pid", "alive", "online", "log"],
                   [[n.name, n.pid or "-", "yes" if n.alive else "no",
                     "" if n.name not in state.sites else ("yes" if online and n.name in online else "no"), n.log]
                    for n in nodes], title=f"local federation in {root} (port {state.port})")
