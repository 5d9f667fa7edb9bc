"""The cryptography of masking (package `cryptography`): key agreement, signed keys, sealed shares, mask streams.

- Each site makes two X25519 key pairs a round: `c` to seal the shares it sends its peers, `s` to agree on the
  pairwise mask seeds. It signs both public keys, with the job, the round and its name, with its certificate's key;
  every peer checks the signature against the certificate, and the certificate against the project CA, so the
  server that relays the keys cannot put its own in the middle.
- A share goes from i to j sealed with AES-256-GCM under a key both derive (HKDF-SHA256 of X25519(c_i, c_j)), bound
  to the job, round, sender and receiver: the relaying server can neither read it nor move it to another round.
- A seed expands into a mask of uint64 values with ChaCha20 (a stream cipher as a PRG).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass

import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flctl.node.secagg.payload import SecAggError


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise SecAggError(f"{what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise SecAggError(f"{what} is not base64") from None


def raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def agree(private: bytes | X25519PrivateKey, public: bytes, info: bytes) -> bytes:
    """A 32-byte key both ends of an X25519 pair derive (HKDF-SHA256 with `info`)."""
    key = private if isinstance(private, X25519PrivateKey) else X25519PrivateKey.from_private_bytes(private)
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        raise SecAggError(f"a public key is not an X25519 key: {exc}") from None
    return HKDF(hashes.SHA256(), 32, None, info).derive(shared)


def statement(job_id: str, round_no: int, site: str, c_pk: bytes, s_pk: bytes) -> bytes:
    """What a site signs when it advertises its keys."""
    return b"flctl secagg keys\0" + b"\0".join((job_id.encode(), str(round_no).encode(), site.encode(), c_pk, s_pk))


def sign(key_pem: bytes, message: bytes) -> bytes:
    """`message` signed with a certificate's private key (ECDSA P-256 with SHA-256, or RSA PKCS#1 v1.5)."""
    key = serialization.load_pem_private_key(key_pem, None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    raise SecAggError(f"the site's key is a {type(key).__name__}, which cannot sign its masking keys")


def check_signed(cert_pem: bytes, ca_pem: bytes, site: str, message: bytes, signature: bytes) -> None:
    """SecAggError unless `cert_pem` is `site`'s certificate, issued by the project CA, valid now, and `signature`
    is its key's over `message`."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise SecAggError(f"{site}'s certificate is not a PEM certificate") from None
    names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if names != [site]:
        raise SecAggError(f"the keys said to be {site}'s come with the certificate of {names}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise SecAggError(f"{site}'s certificate is not issued by this project's CA") from None
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SecAggError(f"{site}'s certificate is not valid now")
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SecAggError(f"{site}'s certificate has a {type(key).__name__}, which flctl does not check")
    except InvalidSignature:
        raise SecAggError(f"the masking keys said to be {site}'s are not signed by {site}'s certificate: the "
                          "server (or someone between) changed them") from None


@dataclass(frozen=True)
class ShareLabel:
    """What a sealed share is bound to."""

    job_id: str
    round: int
    sender: str
    receiver: str

    def aad(self) -> bytes:
        return "\0".join(("flctl secagg share", self.job_id, str(self.round), self.sender, self.receiver)).encode()


def seal(key: bytes, label: ShareLabel, data: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, data, label.aad())


def unseal(key: bytes, label: ShareLabel, sealed: bytes) -> bytes:
    """The data sealed for `label`; SecAggError when it was sealed for another job, round, sender or receiver, or
    changed."""
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], label.aad())
    except (InvalidTag, ValueError):
        raise SecAggError(f"the share from {label.sender} does not open for job {label.job_id}, round {label.round}: "
                          "it was sealed for another round or site, or changed") from None


def mask(seed: bytes, size: int) -> np.ndarray:
    """`size` uint64 values from `seed` (32 bytes), expanded with ChaCha20."""
    stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(8 * size)), np.uint64)
