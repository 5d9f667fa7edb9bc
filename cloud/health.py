"""Is a deployed node healthy? The server: its port completes a TLS handshake with the project's CA.
A site: the server lists it online (asked through an admin kit's admin client)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from flctl.provisioner.kit_info import read_kit
from flctl.provisioner.kit_layout import KitPaths


def server_answers(kit: Path, timeout_s: float = 3.0) -> bool:
    """True when the server named in `kit` completes a TLS handshake with a certificate of the project's CA."""
    info = read_kit(kit)
    context = ssl.create_default_context(cafile=str(KitPaths.find(kit).ca_cert))
    context.check_hostname = False  # the certificate names the server; the address may be an alias
    try:
        with socket.create_connection((info.server_host, info.server_port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw) as tls:
            return tls.getpeercert() is not None
    except (OSError, ssl.SSLError):
        return False


def sites_online(admin_kit: Path) -> dict[str, float] | None:
    """The sites the server lists online with their last heartbeat (server clock), or None when it cannot be asked."""
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.errors import NodeError

    try:
        with AdminClient.from_kit(admin_kit, timeout_s=5.0) as admin:
            return {site.name: site.last_heartbeat for site in admin.list_sites() if site.online}
    except NodeError:
        return None
