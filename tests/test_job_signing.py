"""Signed job bundles: what verifies, and each reason a signature is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from node.job_signing import SignatureRefused, sign_bundle, verify_bundle
from provisioner.build import provision
from provisioner.project_loader import load_project

from .conftest import LOCAL_PROJECT

BUNDLE = b"PK\x03\x04 pretend this is a zip"


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    return provision(load_project(LOCAL_PROJECT).project, tmp_path_factory.mktemp("ws")).prod_dir


def material(kits, name="admin@localhost", kind="admin"):
    startup = kits / name / "startup"
    return ((startup / f"{kind}.key").read_bytes(), (startup / f"{kind}.crt").read_bytes(),
            (startup / "ca.crt").read_bytes())


def test_a_signed_bundle_verifies_to_its_signer(kits):
    key, cert, ca = material(kits)
    who = verify_bundle(BUNDLE, sign_bundle(BUNDLE, key), cert, ca)
    assert (who.name, who.kind, who.role) == ("admin@localhost", "admin", "project_admin")


def test_a_changed_bundle_is_refused(kits):
    key, cert, ca = material(kits)
    with pytest.raises(SignatureRefused, match="changed after it was signed"):
        verify_bundle(BUNDLE + b"!", sign_bundle(BUNDLE, key), cert, ca)


def test_an_unsigned_bundle_is_refused(kits):
    _, cert, ca = material(kits)
    with pytest.raises(SignatureRefused, match="not signed"):
        verify_bundle(BUNDLE, b"", cert, ca)


def test_a_site_cannot_sign_jobs(kits):
    key, cert, ca = material(kits, "site-1", "site")
    with pytest.raises(SignatureRefused, match="not by an admin"):
        verify_bundle(BUNDLE, sign_bundle(BUNDLE, key), cert, ca)


def test_another_projects_admin_is_refused(kits, tmp_path):
    other = provision(load_project(LOCAL_PROJECT).project, tmp_path / "other").prod_dir
    key, cert, _ = material(other)
    _, _, ca = material(kits)
    with pytest.raises(SignatureRefused, match="another CA"):
        verify_bundle(BUNDLE, sign_bundle(BUNDLE, key), cert, ca)


def test_revoked_and_expired_signers_are_refused(kits):
    key, cert, ca = material(kits)
    serial = x509.load_pem_x509_certificate(cert).serial_number
    with pytest.raises(SignatureRefused, match="was revoked"):
        verify_bundle(BUNDLE, sign_bundle(BUNDLE, key), cert, ca, revoked={serial})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=800)
    with pytest.raises(SignatureRefused, match="not valid now"):
        verify_bundle(BUNDLE, sign_bundle(BUNDLE, key), cert, ca, now=later)
