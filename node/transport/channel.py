"""The channel a site's daemon and its job processes call the server on, over the site's transport.

`grpc` dials the server's gRPC port; `wss` dials this process's `WssTunnel`, which carries the same connection
inside a WebSocket. Either way the caller gets a `grpc.Channel` with mutual TLS and the kit's certificate, so
the stubs, the messages and the streaming code above it are the same for both.
"""

from __future__ import annotations

import threading

import grpc

from flctl.node.config.kit import NodeKit
from flctl.node.config.resources import Resources
from flctl.node.security.tls import channel, channel_options
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_config import NodeConfig

TRANSPORTS = ("grpc", "wss")
_tunnels: dict[str, object] = {}
_lock = threading.Lock()


def site_transport(kit: NodeKit, resources: Resources) -> str:
    """The transport this site uses: its local/resources.yml's `transport`, else its kit's, else grpc. A KitError
    (exit 2) when wss is chosen and the kit names no WebSocket port of the server."""
    config = kit.info.config
    kit_choice = config.transport if isinstance(config, NodeConfig) else None
    transport = resources.transport or kit_choice or "grpc"
    if transport == "wss" and getattr(config, "wss_port", None) is None:
        raise KitError(f"this site's transport is wss, but its kit ({kit.root}) names no wss_port of the server; "
                        "give the server a wss_port in project.yml and provision again, or set transport: grpc in "
                        "local/resources.yml")
    return transport


def kit_transport(kit: NodeKit) -> str:
    """The transport a site started from `kit` uses (its local/resources.yml read); grpc for a server or an admin."""
    from flctl.node.config.resources import load_resources, resources_path

    if kit.info.kind != "site":
        return "grpc"
    return site_transport(kit, load_resources(resources_path(kit.root)))


def site_channel(kit: NodeKit, window_bytes: int, transport: str) -> grpc.Channel:
    """A channel to the server over `transport` (see `site_transport`)."""
    if transport != "wss":
        return channel(kit, window_bytes)
    tunnel = _tunnel(kit)
    creds = grpc.ssl_channel_credentials(root_certificates=kit.ca_pem, private_key=kit.key_pem,
                                         certificate_chain=kit.cert_pem)
    host = kit.info.server_host  # the name the server's certificate is checked against, as over grpc
    options = [*channel_options(window_bytes), ("grpc.ssl_target_name_override", host),
               ("grpc.default_authority", kit.target)]
    return grpc.secure_channel(tunnel.target, creds, options=options)


def _tunnel(kit: NodeKit):  # type: ignore[no-untyped-def]
    """This process's tunnel to the server (one, started at first use)."""
    from flctl.node.transport.wss_tunnel import WssTunnel, wss_url

    url = wss_url(kit)
    with _lock:
        tunnel = _tunnels.get(url)
        if tunnel is None:
            tunnel = _tunnels[url] = WssTunnel(kit)
        return tunnel
