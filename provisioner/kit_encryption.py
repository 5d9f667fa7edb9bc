"""Encrypt a kit's zip for delivery by e-mail or USB, and decrypt it at the other end.

A kit's zip holds its participant's private key. `NAME.zip.enc` is that zip whole,
encrypted and authenticated with AES-256-GCM under a key made for this one file:

* to a passphrase: scrypt (N=2^17, r=8, p=1; run once per provisioning run, over a
  random 16-byte salt) gives a master key; HKDF-SHA256 over a random 16-byte file
  salt turns it into the file's key;
* to a public key (X25519 or EC P-256, given as a public key, a certificate request
  or a certificate): an ephemeral key pair of the same kind, ECDH with the
  recipient's key, and HKDF-SHA256 over the shared secret, salted with both public
  keys, give the file's key (ECIES, as age and HPKE do it).

The file, all integers big-endian:

    magic     8 bytes  b"FLCTLKIT"
    version   1 byte   1
    scheme    1 byte   1 passphrase, 2 X25519, 3 EC P-256
    passphrase:  log2(N) 1, r 1, p 1, scrypt salt 16, file salt 16, check 16
    X25519:      recipient sha256 16, ephemeral public key 32
    EC P-256:    recipient sha256 16, ephemeral public key 65 (uncompressed point)
    nonce    12 bytes
    sealed   the rest: AES-256-GCM ciphertext of the zip and its 16-byte tag

The whole header is the GCM associated data, so a changed byte anywhere is caught.
`check` (HKDF of the master key, a different label) tells a wrong passphrase from a
damaged file; `recipient sha256` (of the recipient's SubjectPublicKeyInfo) tells a
wrong key from a damaged file. Neither helps an attacker: both are what trying a
passphrase or key against the tag would tell anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from flctl.provisioner.errors import KitError, PassphraseError

MAGIC = b"FLCTLKIT"
VERSION = 1
SUFFIX = ".zip.enc"
PASSPHRASE, X25519, P256 = 1, 2, 3
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
MAX_BYTES = 64 * 1024 * 1024  # a kit is tens of KB; refuse to read anything this large
_FILE_INFO = b"flctl kit zip v1 file key"
_CHECK_INFO = b"flctl kit zip v1 passphrase check"
_PASSPHRASE_HEAD = struct.Struct(">3B16s16s16s")
_NONCE = 12

RecipientKey = x25519.X25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Passphrase:
    """A passphrase stretched once (scrypt is slow on purpose), ready to encrypt any number of zips."""

    master: bytes
    salt: bytes
    log2_n: int = SCRYPT_LOG2_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def derive(cls, passphrase: bytes, salt: bytes | None = None, log2_n: int = SCRYPT_LOG2_N,
               r: int = SCRYPT_R, p: int = SCRYPT_P) -> Passphrase:
        salt = os.urandom(16) if salt is None else salt
        master = Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)
        return cls(master, salt, log2_n, r, p)

    def check(self) -> bytes:
        return _hkdf(self.master, b"", _CHECK_INFO, 16)


@dataclass(frozen=True)
class Delivery:
    """How a provisioning run encrypts kit zips: to each named participant's key, else to the passphrase."""

    passphrase: Passphrase | None = None
    recipients: Mapping[str, RecipientKey] = field(default_factory=dict)

    def encrypt(self, name: str, zip_data: bytes) -> bytes | None:
        """`name`'s zip as `NAME.zip.enc` holds it, or None when this run does not encrypt it."""
        recipient = self.recipients.get(name)
        if recipient is not None:
            return encrypt_to_key(zip_data, recipient)
        if self.passphrase is not None:
            return encrypt_with_passphrase(zip_data, self.passphrase)
        return None


def encrypt_with_passphrase(data: bytes, passphrase: Passphrase) -> bytes:
    """`data` sealed under a key derived from the passphrase and a fresh file salt."""
    file_salt = os.urandom(16)
    head = _prefix(PASSPHRASE) + _PASSPHRASE_HEAD.pack(passphrase.log2_n, passphrase.r, passphrase.p,
                                                      passphrase.salt, file_salt, passphrase.check())
    return _seal(_hkdf(passphrase.master, file_salt, _FILE_INFO, 32), head, data)


def encrypt_to_key(data: bytes, recipient: RecipientKey) -> bytes:
    """`data` sealed so that only the holder of `recipient`'s private key can open it."""
    ephemeral: PrivateKey
    if isinstance(recipient, x25519.X25519PublicKey):
        scheme, ephemeral = X25519, x25519.X25519PrivateKey.generate()
        shared = ephemeral.exchange(recipient)
    elif isinstance(recipient, ec.EllipticCurvePublicKey) and isinstance(recipient.curve, ec.SECP256R1):
        scheme, ephemeral = P256, ec.generate_private_key(ec.SECP256R1())
        shared = ephemeral.exchange(ec.ECDH(), recipient)
    else:
        raise KitError("a kit can be encrypted to an X25519 or EC P-256 public key only")
    eph_raw = _raw_public(ephemeral.public_key())
    head = _prefix(scheme) + key_id(recipient) + eph_raw
    return _seal(_hkdf(shared, eph_raw + _raw_public(recipient), _FILE_INFO, 32), head, data)


def decrypt(data: bytes, shown: str, passphrase: bytes | None = None, key: PrivateKey | None = None) -> bytes:
    """The zip inside an encrypted kit file; PassphraseError for a wrong passphrase or key (or none given),
    KitError for a file that is not one, or was damaged or altered."""
    if len(data) < len(MAGIC) + 2 or not data.startswith(MAGIC):
        raise KitError(f"{shown} is not an encrypted kit (it does not start with {MAGIC.decode()})")
    version, scheme = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version != VERSION:
        raise KitError(f"{shown} is an encrypted kit of format {version}; this flctl reads format {VERSION}")
    at = len(MAGIC) + 2
    if scheme == PASSPHRASE:
        if passphrase is None:
            raise PassphraseError(f"{shown} is encrypted with a passphrase; give it with --passphrase-env VAR")
        head_end = at + _PASSPHRASE_HEAD.size
        _need(data, head_end + _NONCE + 16, shown)
        log2_n, r, p, salt, file_salt, check = _PASSPHRASE_HEAD.unpack(data[at:head_end])
        if not (10 <= log2_n <= 18 and 1 <= r <= 8 and 1 <= p <= 4):  # at most 256 MiB, whatever the file says
            raise KitError(f"{shown} is damaged or was altered (scrypt parameters out of range)")
        stretched = Passphrase.derive(passphrase, salt, log2_n, r, p)
        if not hmac.compare_digest(stretched.check(), check):
            raise PassphraseError(f"the passphrase does not open {shown}; ask the provisioner for the right one")
        file_key = _hkdf(stretched.master, file_salt, _FILE_INFO, 32)
    elif scheme in (X25519, P256):
        if key is None:
            raise PassphraseError(f"{shown} is encrypted to a public key; give its private key with --key KEY.pem")
        size = 32 if scheme == X25519 else 65
        head_end = at + 16 + size
        _need(data, head_end + _NONCE + 16, shown)
        wanted, eph_raw = data[at:at + 16], data[at + 16:head_end]
        if not hmac.compare_digest(key_id(key.public_key()), wanted):
            raise PassphraseError(f"{shown} was encrypted to another key (sha256 {wanted.hex()}...), not this "
                                  f"one ({key_id(key.public_key()).hex()}...)")
        file_key = _hkdf(_exchange(key, eph_raw, shown), eph_raw + _raw_public(key.public_key()), _FILE_INFO, 32)
    else:
        raise KitError(f"{shown} uses encryption scheme {scheme}, which this flctl does not know")
    nonce = data[head_end:head_end + _NONCE]
    try:
        return AESGCM(file_key).decrypt(nonce, data[head_end + _NONCE:], data[:head_end])
    except InvalidTag:
        raise KitError(f"{shown} is damaged or was altered (its authentication tag does not match); "
                       "ask the provisioner to send it again") from None


def load_recipient(path: Path) -> RecipientKey:
    """The public key in a PEM public key, certificate request or certificate file."""
    shown = str(path)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KitError(f"{shown}: no such file") from None
    except OSError as exc:
        raise KitError(f"{shown} cannot be read ({exc.strerror})") from None
    loaders = (serialization.load_pem_public_key, lambda b: x509.load_pem_x509_csr(b).public_key(),
               lambda b: x509.load_pem_x509_certificate(b).public_key())
    for loader in loaders:
        try:
            public = loader(pem)
        except ValueError:
            continue
        if isinstance(public, x25519.X25519PublicKey) or (
                isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)):
            return public
        raise KitError(f"{shown} holds a {type(public).__name__.removeprefix('_')} key; a kit can be encrypted to "
                       "an X25519 or EC P-256 key only")
    raise KitError(f"{shown} is not a PEM public key, certificate request or certificate")


def load_private(path: Path) -> PrivateKey:
    """The recipient's private key (unencrypted PEM, X25519 or EC P-256)."""
    shown = str(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except FileNotFoundError:
        raise KitError(f"{shown}: no such file") from None
    except (OSError, TypeError, ValueError):
        raise KitError(f"{shown} is not an unencrypted PEM private key") from None
    if isinstance(key, x25519.X25519PrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        return key
    raise KitError(f"{shown} is not an X25519 or EC P-256 key; kits are encrypted to those only")


def key_id(public: RecipientKey) -> bytes:
    """The first 16 bytes of the SHA-256 of the key's SubjectPublicKeyInfo."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:16]


def _prefix(scheme: int) -> bytes:
    return MAGIC + bytes((VERSION, scheme))


def _seal(key: bytes, head: bytes, data: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return head + nonce + AESGCM(key).encrypt(nonce, data, head)


def _hkdf(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt or None, info).derive(secret)


def _raw_public(public: RecipientKey) -> bytes:
    if isinstance(public, x25519.X25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _exchange(key: PrivateKey, eph_raw: bytes, shown: str) -> bytes:
    try:
        if isinstance(key, x25519.X25519PrivateKey):
            return key.exchange(x25519.X25519PublicKey.from_public_bytes(eph_raw))
        return key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), eph_raw))
    except ValueError:
        raise KitError(f"{shown} is damaged or was altered (its ephemeral key is not a valid point)") from None


def _need(data: bytes, size: int, shown: str) -> None:
    if len(data) < size:
        raise KitError(f"{shown} is damaged or was altered (it is cut short)")
