"""gRPC over mutual TLS with a kit's certificates, and the peer's identity from its certificate."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from typing import Any

import grpc
from cryptography import x509

from flctl.node.config.kit import NodeKit
from flctl.provisioner import pki
from flctl.provisioner.kit_layout import KitPaths

MAX_MESSAGE = 8 * 1024 * 1024
CHUNK = 1024 * 1024
WINDOW_MB = 4
"""The default flow-control window per stream (`stream_window_mb` in a node's `local/resources.yml` changes it)."""
# Flow control with a fixed window: each stream lets the peer send WINDOW_MB ahead of what this end has read. With
# gRPC's own window, which grows with its bandwidth-delay estimate, the server daemon held 70-420 MB more while two
# sites uploaded (bench/transfer.py: 143-293 MB at 100 MB, 242-574 MB at 1 GB, against 129-141 and 151-179 MB
# with this), at the same speed on loopback. A fixed window caps a stream at window / round-trip time (4 MiB over
# 50 ms: 80 MiB/s), so a node on a long link can set a bigger one, or 0 for gRPC's adaptive window.


def flow_control(window_bytes: int) -> list[tuple[str, int]]:
    """The channel options of a fixed flow-control window of `window_bytes`; 0: gRPC's adaptive window."""
    if window_bytes <= 0:
        return []
    return [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", window_bytes)]


_CHANNEL_BASE = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
_SERVER_BASE = [
    *_CHANNEL_BASE[:2],
    # Keepalive limits: flctl's own clients ping every 20 s; a peer that pings more often than every 5 s (with no
    # data to send) three times over is sent GOAWAY and cut off, and a connection without a call for 10 minutes is
    # closed (a client reconnects at its next call). No maximum connection age: a site's command stream is meant
    # to last, and ending it would only make every site reconnect.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_connection_idle_ms", 600_000),
]


def channel_options(window_bytes: int = WINDOW_MB * CHUNK) -> list[tuple[str, int]]:
    return [*_CHANNEL_BASE, *flow_control(window_bytes)]


def server_options(window_bytes: int = WINDOW_MB * CHUNK) -> list[tuple[str, int]]:
    return [*_SERVER_BASE, *flow_control(window_bytes)]


CHANNEL_OPTIONS = channel_options()
SERVER_OPTIONS = server_options()


def server_credentials(kit: NodeKit) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(kit.key_pem, kit.cert_pem)], root_certificates=kit.ca_pem,
                                       require_client_auth=True)


def channel(kit: NodeKit, window_bytes: int = WINDOW_MB * CHUNK) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(root_certificates=kit.ca_pem, private_key=kit.key_pem,
                                         certificate_chain=kit.cert_pem)
    return grpc.secure_channel(kit.target, creds, options=channel_options(window_bytes))


def peer_identity(context: Any) -> tuple[pki.CertIdentity, x509.Certificate] | None:
    """The identity in the client certificate that TLS verified; None when there is none."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    try:
        return pki.identity_of(cert), cert
    except ValueError:
        return None


def server_certificate_problem(kit: NodeKit, now: dt.datetime | None = None, timeout_s: float = 5) -> str | None:
    """Why this machine cannot accept the server's certificate (expired, not yet valid, another CA), in a sentence;
    None when it looks right or cannot be fetched. The certificate is fetched without verifying it, only to say so."""
    host, _, port = kit.target.rpartition(":")
    paths = KitPaths.find(kit.root)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.load_cert_chain(paths.cert(kit.info.kind), paths.key(kit.info.kind))  # type: ignore[arg-type]
        with socket.create_connection((host, int(port)), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    now = now or dt.datetime.now(dt.UTC)
    shown = f"{now:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_after_utc < now:
        return (f"the server's certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (this machine's "
                f"clock says {shown}); the server needs a renewed kit (`flctl provision renew`), or check the clocks")
    if cert.not_valid_before_utc > now:
        return (f"the server's certificate is not yet valid: valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                f"UTC, and this machine's clock says {shown}; check the clocks of this machine, the server and the "
                "provisioner")
    if not pki.issued_by(cert, x509.load_pem_x509_certificate(kit.ca_pem)):
        return ("the server's certificate was not issued by this kit's project CA; is this kit for that project, "
                f"and is {kit.target} its server?")
    return None
