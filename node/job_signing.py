"""Signed jobs: the submitting admin signs the bundle; the server and every site verify it.

The signature covers `flctl-job-v1:<sha256 of the bundle>`, made with the admin's kit key.
Verification checks the signature, that the signer's certificate was issued by the project CA,
is an admin certificate, is valid now and is not revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Container

from cryptography import x509

from provisioner import pki

CONTEXT = b"flctl-job-v1:"


class SignatureRefused(Exception):
    """The bundle's signature or its signer cannot be trusted; the message says why."""


def _message(bundle: bytes) -> bytes:
    return CONTEXT + hashlib.sha256(bundle).hexdigest().encode()


def sign_bundle(bundle: bytes, key_pem: bytes) -> bytes:
    return pki.sign_bytes(pki.load_key(key_pem), _message(bundle))


def verify_bundle(bundle: bytes, signature: bytes, signer_cert_pem: bytes, ca_pem: bytes,
                  revoked: Container[int] = (), now: dt.datetime | None = None) -> pki.CertIdentity:
    """The signer's identity when everything checks out; SignatureRefused otherwise."""
    now = now or dt.datetime.now(dt.UTC)
    if not signature or not signer_cert_pem:
        raise SignatureRefused("the job is not signed; submit it with `flctl job submit`, which signs it")
    try:
        cert = x509.load_pem_x509_certificate(signer_cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise SignatureRefused("the signer's certificate is not a PEM certificate") from None
    if not pki.issued_by(cert, ca):
        raise SignatureRefused("the job was signed with a certificate from another CA")
    try:
        who = pki.identity_of(cert)
    except ValueError as exc:
        raise SignatureRefused(f"the signer's certificate is not an flctl identity: {exc}") from None
    if who.kind != "admin":
        raise SignatureRefused(f"the job was signed by {who.kind} '{who.name}', not by an admin")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureRefused(f"the signer's certificate ({who.name}) is not valid now "
                               f"(expires {cert.not_valid_after_utc:%Y-%m-%d})")
    if cert.serial_number in revoked:
        raise SignatureRefused(f"the signer's certificate ({who.name}) was revoked")
    if not pki.verify_bytes(cert.public_key(), signature, _message(bundle)):
        raise SignatureRefused("the job bundle was changed after it was signed (its signature does not match)")
    return who
