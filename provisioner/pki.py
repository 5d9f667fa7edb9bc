"""Keys and certificates: the project CA and the leaf certificates it issues.

One builder makes the part every certificate shares (subject, issuer, key,
validity, serial, key identifiers); the CA and leaves add their own extensions,
with criticality chosen on purpose. Identity lives in the subject:
CN = participant name, O = organisation, OU = kind (server, site, admin, relay), and
for admins the X.520 `role` attribute (2.5.4.72) carries the role.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from flctl.provisioner.names import is_ip
from flctl.provisioner.participant_kinds import KINDS, ROLES, KeyType, Kind, Role

if TYPE_CHECKING:  # project.yml's schema is heavy: a command that only reads a kit does not build it
    from flctl.provisioner.project import Participant

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

ROLE_OID = ObjectIdentifier("2.5.4.72")  # X.520 "role"; OpenSSL prints it as `role`
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertIdentity:
    """Who a certificate says its holder is."""

    name: str
    org: str
    kind: Kind
    role: Role | None


def generate_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(key_type.split("-")[1])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def subject_for(name: str, org: str, kind: Kind, role: Role | None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
    ]
    if role is not None:
        attrs.append(x509.NameAttribute(ROLE_OID, role))
    return x509.Name(attrs)


def identity_of(cert: x509.Certificate) -> CertIdentity:
    """Read the identity back from a certificate; ValueError when it is not one of ours."""
    subject = cert.subject

    def one(oid: ObjectIdentifier) -> str | None:
        values = subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    name, org, kind, role = (one(NameOID.COMMON_NAME), one(NameOID.ORGANIZATION_NAME),
                             one(NameOID.ORGANIZATIONAL_UNIT_NAME), one(ROLE_OID))
    if not name or not org or kind not in KINDS:
        raise ValueError(f"certificate subject '{subject.rfc4514_string()}' is not an flctl participant")
    if kind == "admin" and role not in ROLES:
        raise ValueError(f"admin certificate '{name}' carries no valid role")
    return CertIdentity(name, org, kind, role if kind == "admin" else None)  # type: ignore[arg-type]


def _base(subject: x509.Name, issuer: x509.Name, public_key: PublicKey, not_before: dt.datetime,
          not_after: dt.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def build_ca(project: str, key: PrivateKey, valid_days: int, now: dt.datetime) -> x509.Certificate:
    """A self-signed CA that may issue leaves only (path length 0)."""
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"{project} CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, project),
    ])
    builder = (
        _base(name, name, key.public_key(), now - CLOCK_SKEW, now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def leaf_not_after(ca_cert: x509.Certificate, valid_days: int, now: dt.datetime) -> dt.datetime:
    """When a leaf issued now expires: after `valid_days`, but never after the CA."""
    not_after = min(now + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise ValueError(f"the project CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}")
    return not_after


class Issuer:
    """The project CA issuing leaves: what every leaf shares is worked out once, not per certificate."""

    def __init__(self, ca_cert: x509.Certificate, ca_key: PrivateKey) -> None:
        self.ca_cert, self.ca_key = ca_cert, ca_key
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        self._extensions: dict[tuple[Kind, bool], list[x509.Extension[x509.ExtensionType]]] = {}

    def issue(self, who: Participant, public_key: PublicKey, valid_days: int, now: dt.datetime
              ) -> x509.Certificate:
        """A leaf for `who`, never outliving the CA; a server's certificate covers its SAN hosts."""
        not_after = leaf_not_after(self.ca_cert, valid_days, now)
        extensions = [_ext(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False),
                      *self._shared(who.kind, isinstance(public_key, rsa.RSAPublicKey))]
        hosts = who.san_hosts()
        if hosts:
            sans: list[x509.GeneralName] = [
                x509.IPAddress(ipaddress.ip_address(h)) if is_ip(h) else x509.DNSName(h) for h in hosts
            ]
            extensions.append(_ext(x509.SubjectAlternativeName(sans), critical=False))
        builder = x509.CertificateBuilder(
            issuer_name=self.ca_cert.subject, subject_name=subject_for(who.name, who.org, who.kind, who.role),
            public_key=public_key, serial_number=x509.random_serial_number(),
            not_valid_before=now - CLOCK_SKEW, not_valid_after=not_after, extensions=extensions)
        return builder.sign(self.ca_key, hashes.SHA256())

    def _shared(self, kind: Kind, is_rsa: bool) -> list[x509.Extension[x509.ExtensionType]]:
        """The extensions every leaf of `kind` carries, in the order `issue` has always written them."""
        cached = self._extensions.get((kind, is_rsa))
        if cached is None:
            usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
            if kind in ("server", "relay"):  # a relay is a server to its sites and a client to its parent
                usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
            cached = self._extensions[kind, is_rsa] = [
                _ext(x509.BasicConstraints(ca=False, path_length=None), critical=True),
                _ext(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                                   data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True),
                _ext(x509.ExtendedKeyUsage(usages), critical=False),
                _ext(self._aki, critical=False),
            ]
        return cached


def _ext(value: x509.ExtensionType, critical: bool) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(value.oid, critical, value)


def issue(ca_cert: x509.Certificate, ca_key: PrivateKey, who: Participant, public_key: PublicKey,
          valid_days: int, now: dt.datetime) -> x509.Certificate:
    """A leaf for `who`, never outliving the CA (one certificate; `Issuer` for many)."""
    return Issuer(ca_cert, ca_key).issue(who, public_key, valid_days, now)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM private key; TypeError when a passphrase is needed or given in vain, ValueError when wrong."""
    key = serialization.load_pem_private_key(data, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("only EC and RSA keys are supported")
    return key


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(public_key: object, signature: bytes, data: bytes) -> bool:
    """True when `signature` over `data` was made by the key behind `public_key`."""
    from cryptography.exceptions import InvalidSignature

    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                              hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True when `ca_cert`'s key signed `cert`."""
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()
