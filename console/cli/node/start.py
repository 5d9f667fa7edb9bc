"""`flctl node start KIT`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import terminal

if TYPE_CHECKING:
    from flctl.node.config.kit import NodeKit

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", file_okay=False,
                                                   help="Where the node keeps its state and logs "
                                                        "[default: KIT/workspace].", show_default=False)]


def workspace_for(kit: Path, workspace: Path | None) -> Path:
    from flctl.provisioner.kit_layout import KitPaths

    return workspace or KitPaths.find(kit).root / "workspace"


def command(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="The server's, a relay's or a site's startup kit.")],
    workspace: WorkspaceOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object a line on stdout as the node "
                                                          "goes: listening/connecting, then stopped.")] = False,
) -> None:
    """Start the server, a relay or a site from its kit, in the foreground, until SIGINT or SIGTERM.

    The kit's signature is verified first; a kit with a changed file is refused,
    naming the file. Logs go to the terminal and to WORKSPACE/node.log. With --json, stdout carries
    only JSON lines: {"event": "listening", ...} (server) or {"event": "connecting", ...} (site), then
    {"event": "stopped"}.
    """
    import logging

    from flctl.node.config.kit import load_kit

    node_kit = load_kit(kit, verify=True)
    ws = workspace_for(kit, workspace)
    ws.mkdir(parents=True, exist_ok=True)
    level = logging.DEBUG if verbose else logging.INFO
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(), logging.FileHandler(ws / "node.log")]
    for handler in handlers:
        handler.setFormatter(fmt)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    if node_kit.info.kind == "server":
        _run_server(node_kit, ws, json_out)
    elif node_kit.info.kind == "site":
        _run_site(node_kit, ws, json_out)
    elif node_kit.info.kind == "relay":
        _run_relay(node_kit, ws, json_out)
    else:
        terminal.abort(f"{kit} is an admin's kit; admins use `flctl job …` with --kit, not `flctl node start`", 2)
    if json_out:
        terminal.json_line({"event": "stopped", "kind": node_kit.info.kind, "name": node_kit.info.name})
    else:
        terminal.info("stopped")
    # The daemon has ended its jobs and released its files: skip the interpreter's teardown of grpc and of a
    # thousand modules (a fifth of a second, which `flctl poc stop` would wait for).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_server(node_kit: NodeKit, ws: Path, json_out: bool) -> None:
    from flctl.node.security import tls_policy

    tls_policy.prepare(node_kit.key_pem)  # before gRPC is imported, which reads it once
    from flctl.node.config.resources import load_resources, resources_path
    from flctl.node.server.daemon import ServerDaemon
    from flctl.provisioner.kit_layout import KitPaths

    tls_min = load_resources(resources_path(node_kit.root)).tls_min_version
    tls_policy.require(node_kit.key_pem, tls_min)
    server = ServerDaemon(node_kit, ws)
    server.start()
    paths = KitPaths.find(node_kit.root)
    try:
        tls_policy.check_served(server.address, paths.cert("server"), paths.key("server"), tls_min)
    except Exception:
        server.stop()
        raise
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    if json_out:
        terminal.json_line({"event": "listening", "kind": "server", "name": node_kit.info.name,
                            "project": node_kit.info.project, "address": server.address})
    else:
        terminal.success(f"server '{node_kit.info.name}' of project '{node_kit.info.project}' is listening on "
                         f"{server.address}")
    server.wait()


def _run_relay(node_kit: NodeKit, ws: Path, json_out: bool) -> None:
    from flctl.node.relay.daemon import Relay

    relay = Relay(node_kit, ws)
    relay.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: relay.stop())
    if json_out:
        terminal.json_line({"event": "listening", "kind": "relay", "name": node_kit.info.name,
                            "project": node_kit.info.project, "address": relay.address, "target": node_kit.target})
    else:
        terminal.success(f"relay '{node_kit.info.name}' listening on {relay.address} for its sites, connecting to "
                         f"{node_kit.target}")
    relay.run()


def _run_site(node_kit: NodeKit, ws: Path, json_out: bool) -> None:
    from flctl.node.site.agent import SiteAgent

    agent = SiteAgent(node_kit, ws)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: agent.stop())
    if json_out:
        terminal.json_line({"event": "connecting", "kind": "site", "name": node_kit.info.name,
                            "project": node_kit.info.project, "target": node_kit.target})
    else:
        terminal.info(f"site '{node_kit.info.name}' connecting to {node_kit.target}")
    agent.run()
