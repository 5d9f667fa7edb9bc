"""Issued certificates: extensions, identity, validity, and checks by openssl and a real TLS handshake."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flctl.provisioner import pki
from flctl.provisioner.build import provision
from flctl.provisioner.project import Participant
from flctl.provisioner.project_loader import load_project

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def assert_is_ca(cert: x509.Certificate) -> None:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.issuer == cert.subject


def assert_is_leaf(cert: x509.Certificate, ca: x509.Certificate, usages: list[x509.ObjectIdentifier]) -> None:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == usages
    cert.verify_directly_issued_by(ca)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc
    assert cert.not_valid_before_utc.tzinfo is not None


def test_ca_and_leaves_carry_the_right_extensions(local_kits):
    """CA: critical BasicConstraints and KeyUsage; leaves: EKU by kind, issued by the CA."""
    prod = local_kits.prod_dir
    ca = load(prod / "site-1/startup/ca.crt")
    assert_is_ca(ca)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    server = load(prod / "localhost/startup/server.crt")
    assert_is_leaf(server, ca, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert_is_leaf(load(prod / "site-1/startup/site.crt"), ca, [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert_is_leaf(load(prod / "admin@localhost/startup/admin.crt"), ca, [ExtendedKeyUsageOID.CLIENT_AUTH])


def test_identity_lives_in_the_subject(local_kits):
    """CN = name, O = org, OU = kind, and the admin's role in the X.520 role attribute."""
    admin = load(local_kits.prod_dir / "admin@localhost/startup/admin.crt")
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin@localhost"
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "local"
    assert admin.subject.get_attributes_for_oid(pki.ROLE_OID)[0].value == "project_admin"
    assert pki.identity_of(admin) == pki.CertIdentity("admin@localhost", "local", "admin", "project_admin")
    site = load(local_kits.prod_dir / "site-1/startup/site.crt")
    assert pki.identity_of(site) == pki.CertIdentity("site-1", "local", "site", None)
    assert site.subject.get_attributes_for_oid(pki.ROLE_OID) == []


def test_leaf_never_outlives_the_ca():
    """A leaf asked to last longer than its CA ends when the CA ends."""
    key = pki.generate_key("ec-p256")
    ca = pki.build_ca("p", key, valid_days=10, now=NOW)
    who = Participant("site-1", "site", "org", None, ())
    leaf = pki.issue(ca, key, who, pki.generate_key("ec-p256").public_key(), valid_days=365, now=NOW)
    assert leaf.not_valid_after_utc == ca.not_valid_after_utc
    with pytest.raises(ValueError, match="expired"):
        pki.issue(ca, key, who, key.public_key(), 1, NOW + dt.timedelta(days=11))


def test_rsa_on_request(write_project, tmp_path):
    """ca.key: rsa-2048 gives RSA keys to the CA and to every participant."""
    path = write_project("api_version: 1\nname: r\nserver: {name: localhost, org: o}\n"
                         "sites: [{name: s1, org: o}]\nca: {key: rsa-2048}\n")
    result = provision(load_project(path).project, tmp_path / "ws", now=NOW)
    site = load(result.prod_dir / "s1/startup/site.crt")
    assert isinstance(site.public_key(), rsa.RSAPublicKey) and site.public_key().key_size == 2048
    assert site.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


@pytest.mark.parametrize("cert", ["localhost/startup/server.crt", "site-1/startup/site.crt",
                                  "admin@localhost/startup/admin.crt"])
def test_openssl_verifies_every_certificate(local_kits, cert):
    """`openssl verify` accepts each leaf against the project CA, for its purpose."""
    prod = local_kits.prod_dir
    purpose = "sslserver" if cert.endswith("server.crt") else "sslclient"
    out = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", prod / "site-1/startup/ca.crt",
                          prod / cert], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(": OK")


def test_openssl_refuses_a_certificate_from_another_project(local_kits, tmp_path, write_project):
    other = provision(load_project(write_project("api_version: 1\nname: other\nserver: {name: localhost, org: o}\n"
                                                 "sites: [{name: s1, org: o}]\n")).project, tmp_path / "ws")
    out = subprocess.run(["openssl", "verify", "-CAfile", local_kits.prod_dir / "site-1/startup/ca.crt",
                          other.prod_dir / "s1/startup/site.crt"], capture_output=True, text=True, check=False)
    assert out.returncode != 0


def test_openssl_shows_the_role(local_kits):
    out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                          local_kits.prod_dir / "admin@localhost/startup/admin.crt"],
                         capture_output=True, text=True, check=True)
    assert "role" in out.stdout and "project_admin" in out.stdout and "OU" in out.stdout


def _handshake(server_kit: Path, client_kit: Path, client_kind: str, ca: Path) -> str:
    """Mutual TLS over loopback; returns the CN the server saw, or raises ssl.SSLError."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_kit / "startup/server.crt", server_kit / "startup/server.key")
    server_ctx.load_verify_locations(server_kit / "startup/ca.crt")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(ca))
    client_ctx.load_cert_chain(client_kit / f"startup/{client_kind}.crt", client_kit / f"startup/{client_kind}.key")
    seen: dict[str, object] = {}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
    finally:
        thread.join(10)
        listener.close()
    peer = seen["peer"]
    assert isinstance(peer, dict)
    return next(v for rdn in peer["subject"] for k, v in rdn if k == "commonName")


def test_real_mutual_tls_handshake(local_kits):
    """The server and site certificates complete a mutual TLS handshake; each side sees the other's name."""
    prod = local_kits.prod_dir
    seen = _handshake(prod / "localhost", prod / "site-1", "site", prod / "site-1/startup/ca.crt")
    assert seen == "site-1"


def test_handshake_fails_with_another_projects_client(local_kits, tmp_path, write_project):
    """A site certificate from another project's CA is refused by the server."""
    other = provision(load_project(write_project("api_version: 1\nname: other\nserver: {name: localhost, org: o}\n"
                                                 "sites: [{name: s1, org: o}]\n")).project, tmp_path / "ws")
    prod = local_kits.prod_dir
    with pytest.raises(ssl.SSLError, match=r"UNKNOWN_CA|unknown ca"):
        _handshake(prod / "localhost", other.prod_dir / "s1", "site", prod / "site-1/startup/ca.crt")
