"""Who is calling: the verified client certificate, its kind, and whether it was revoked."""

from __future__ import annotations

from typing import Any

import grpc
from cryptography import x509

from flctl.node.security.revocation import Revocations
from flctl.node.security.tls import peer_identity
from flctl.provisioner.pki import CertIdentity

KNOWN_CERTS = 8192
"""How many certificates' identities are kept parsed (a thousand sites, their admins, and room for new kits)."""
_known: dict[bytes, tuple[CertIdentity, x509.Certificate] | None] = {}


def _peer_identity(context: Any) -> tuple[CertIdentity, x509.Certificate] | None:
    """`peer_identity`, worked out once per certificate: every call of a site presents the same one, and parsing it
    costs more than most calls' own work. Revocation is still checked on every call, by `caller`."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    found = _known.get(pems[0], False)
    if found is False:
        if len(_known) >= KNOWN_CERTS:
            _known.clear()
        found = _known[pems[0]] = peer_identity(context)
    return found  # type: ignore[return-value]


def certified(context: Any) -> CertIdentity | None:
    """The identity in the caller's verified certificate (parsed once per certificate); None when there is none.
    Neither its kind nor revocation is checked here: `caller` does that."""
    found = _peer_identity(context)
    return None if found is None else found[0]


def caller(context: Any, kind: str, revocations: Revocations) -> tuple[CertIdentity, x509.Certificate]:
    """The caller's identity, or abort the call: no certificate, the wrong kind, or a revoked one."""
    found = _peer_identity(context)
    if found is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid flctl certificate")
    who, cert = found  # type: ignore[misc]
    if cert.serial_number in revocations:
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      f"the certificate of {who.kind} '{who.name}' was revoked; ask the project admin for a new kit")
    if who.kind != kind and not (kind == "site" and who.kind == "relay"):  # a relay calls its parent as a site
        service = "Federation service is for sites" if kind == "site" else "Admin service is for admins"
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"the {service}; '{who.name}' holds a {who.kind} certificate")
    return who, cert
