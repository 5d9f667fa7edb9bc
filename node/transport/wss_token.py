"""The signed token a site on `wss` may present instead of a client certificate on the WebSocket's TLS, for a
network whose proxy inspects TLS (terminates it with its own certificate, so no site certificate can reach the
server). Off by default on both ends: a server takes tokens only with `wss_token_auth: true` in its
local/resources.yml, a site sends one only with `wss_auth: token` in its own.

A token never replaces the site's identity: it only decides who may open a tunnel to the gRPC port. Inside the
tunnel gRPC's mutual TLS still runs end to end (the inspecting proxy sees it only as WebSocket payload), and the
server takes the caller's name, kind and revocation from that certificate as for every site.

Format: three base64url fields joined by dots: the site's certificate (PEM), the claims (canonical JSON: `site`,
`server`, `path`, `iat`, `exp`, at most `MAX_LIFETIME_S` apart) and the signature over the claims' bytes with the
site's key (ECDSA P-256 or RSA-PSS, SHA-256; `pki.sign_bytes`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable

from cryptography import x509

from flctl.provisioner import pki

HEADER = "X-Flctl-Site-Token"
LIFETIME_S = 120
MAX_LIFETIME_S = 300
CLOCK_SKEW_S = 60


class TokenRefused(Exception):
    """Why a token does not open a tunnel (a sentence)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(cert_pem: bytes, key_pem: bytes, site: str, server: str, path: str, now: float | None = None) -> str:
    """A token for `site` to open `path` on `server`, valid for `LIFETIME_S` from `now`."""
    now = time.time() if now is None else now
    claims = json.dumps({"site": site, "server": server, "path": path, "iat": int(now), "exp": int(now) + LIFETIME_S},
                        sort_keys=True, separators=(",", ":")).encode()
    signature = pki.sign_bytes(pki.load_key(key_pem), claims)
    return ".".join((_b64(cert_pem), _b64(claims), _b64(signature)))


def check_token(token: str, ca: x509.Certificate, server: str, path: str, revoked: Callable[[int], bool],
                now: float | None = None) -> str:
    """The site's name when `token` lets it open `path` on `server`; else TokenRefused saying why."""
    now = time.time() if now is None else now
    try:
        cert_part, claims_part, signature_part = token.split(".")
        cert = x509.load_pem_x509_certificate(_unb64(cert_part))
        claims_bytes, signature = _unb64(claims_part), _unb64(signature_part)
        claims = json.loads(claims_bytes)
        site, for_server, for_path = str(claims["site"]), str(claims["server"]), str(claims["path"])
        issued, expires = float(claims["iat"]), float(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenRefused("the token is malformed") from None
    if not pki.issued_by(cert, ca):
        raise TokenRefused("the token's certificate was not issued by this project's CA")
    try:
        who = pki.identity_of(cert)
    except ValueError:
        raise TokenRefused("the token's certificate names no participant") from None
    if who.kind != "site" or who.name != site:
        raise TokenRefused(f"the token's certificate belongs to {who.kind} {who.name!r}, not to site {site!r}")
    if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
        raise TokenRefused(f"the certificate of site {site!r} is not valid now")
    if cert.serial_number and revoked(cert.serial_number):
        raise TokenRefused(f"the certificate of site {site!r} was revoked")
    if not pki.verify_bytes(cert.public_key(), signature, claims_bytes):
        raise TokenRefused(f"the token was not signed with the key of site {site!r}")
    if for_server != server or for_path != path:
        raise TokenRefused(f"the token was made for {for_server}{for_path}, not {server}{path}")
    if expires - issued > MAX_LIFETIME_S or not issued - CLOCK_SKEW_S <= now <= expires + CLOCK_SKEW_S:
        raise TokenRefused("the token has expired or is not valid yet (check the clocks)")
    return site
