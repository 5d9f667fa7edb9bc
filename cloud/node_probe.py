"""Is the node of a kit alive, and ready? What a container's health check and Kubernetes' probes ask.

Alive: the node started from the kit runs (its workspace's PID file names a live `flctl node start`). Ready: the
server's federation port on this machine completes a TLS handshake with the project's CA (the server), or the
server the kit names does (a site: it can reach its server).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from flctl.provisioner.kit_config import NodeConfig
from flctl.provisioner.kit_info import read_kit
from flctl.provisioner.kit_layout import KitPaths


def alive(workspace: Path) -> tuple[bool, str]:
    """(whether the node of `workspace` runs, why not)."""
    from flctl.node.process import pidfile

    pid, stale = pidfile.find(workspace)
    return (True, f"running (PID {pid})") if pid is not None else (False, f"not running: {stale or 'no PID file'}")


def ready(kit: Path, timeout_s: float = 5.0) -> tuple[bool, str]:
    """(whether the kit's server answers TLS with a certificate of the project's CA, what was tried)."""
    info = read_kit(kit)
    config = info.config
    if not isinstance(config, NodeConfig):
        return False, f"{kit} is an admin's kit, not a server's or a site's"
    local = info.kind == "server"
    host, port = ("127.0.0.1", config.listen.port if config.listen else info.server_port) if local \
        else (info.server_host, info.server_port)
    context = ssl.create_default_context(cafile=str(KitPaths.find(kit).ca_cert))
    context.check_hostname = not local
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=info.server_host) as tls:
            tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return False, f"the server at {host}:{port} does not answer TLS ({exc})"
    return True, f"the server at {host}:{port} answers TLS with a certificate of the project's CA"
