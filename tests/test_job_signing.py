"""Signed job bundles: what verifies, and each reason a signature is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from flctl.node.jobs.job_signing import SignatureRefused, check_target, new_claims, sign_claims, verify_bundle
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import load_project

from .conftest import LOCAL_PROJECT

BUNDLE = b"PK\x03\x04 pretend this is a zip"


def sign(bundle: bytes, key: bytes, **kwargs) -> tuple[bytes, str]:
    """A v2 signature over claims for `bundle` (job 'job-a' at site-1), and the claims as signed."""
    claims = new_claims(bundle, "job-a", ["site-1"], **kwargs).to_json()
    return sign_claims(claims, key), claims


def verify_bundle_v2(bundle, signed, cert, ca, **kwargs):
    return verify_bundle(bundle, signed[0], cert, ca, signed[1], **kwargs)


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    return provision(load_project(LOCAL_PROJECT).project, tmp_path_factory.mktemp("ws")).prod_dir


def material(kits, name="admin@localhost", kind="admin"):
    startup = kits / name / "startup"
    return ((startup / f"{kind}.key").read_bytes(), (startup / f"{kind}.crt").read_bytes(),
            (startup / "ca.crt").read_bytes())


def test_a_signed_bundle_verifies_to_its_signer(kits):
    key, cert, ca = material(kits)
    who = verify_bundle_v2(BUNDLE, sign(BUNDLE, key), cert, ca)[0]
    assert (who.name, who.kind, who.role) == ("admin@localhost", "admin", "project_admin")


def test_a_changed_bundle_is_refused(kits):
    key, cert, ca = material(kits)
    with pytest.raises(SignatureRefused, match="changed after it was signed"):
        verify_bundle_v2(BUNDLE + b"!", sign(BUNDLE, key), cert, ca)


def test_an_unsigned_bundle_is_refused(kits):
    _, cert, ca = material(kits)
    with pytest.raises(SignatureRefused, match="not signed"):
        verify_bundle(BUNDLE, b"", cert, ca, "")


def test_a_site_cannot_sign_jobs(kits):
    key, cert, ca = material(kits, "site-1", "site")
    with pytest.raises(SignatureRefused, match="not by an admin"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key), cert, ca)[0]


def test_another_projects_admin_is_refused(kits, tmp_path):
    other = provision(load_project(LOCAL_PROJECT).project, tmp_path / "other").prod_dir
    key, cert, _ = material(other)
    _, _, ca = material(kits)
    with pytest.raises(SignatureRefused, match="another CA"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key), cert, ca)[0]


def test_revoked_and_expired_signers_are_refused(kits):
    key, cert, ca = material(kits)
    serial = x509.load_pem_x509_certificate(cert).serial_number
    with pytest.raises(SignatureRefused, match="was revoked"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key), cert, ca, revoked={serial})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=800)
    with pytest.raises(SignatureRefused, match="not valid now"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key), cert, ca, now=later)


def test_claims_bind_the_job_id_name_and_sites(kits):
    """The signed claims name the job's id, name and sites: another id, name or site is refused by check_target."""
    key, cert, ca = material(kits)
    _, claims = verify_bundle_v2(BUNDLE, sign(BUNDLE, key, job_id="abc123"), cert, ca)
    assert check_target(claims, "abc123", "job-a", "site-1") == ""
    assert "signed for job abc123, not for job zzz999" in check_target(claims, "zzz999", "job-a", "site-1")
    assert "signed as 'job-a', not as 'other'" in check_target(claims, "abc123", "other", "site-1")
    assert "signed for site-1, not for site-2" in check_target(claims, "abc123", "job-a", "site-2")


def test_changed_claims_are_refused(kits):
    """Claims edited after signing (another job id) no longer match the signature."""
    key, cert, ca = material(kits)
    signature, claims = sign(BUNDLE, key, job_id="abc123")
    with pytest.raises(SignatureRefused, match="changed after it was signed"):
        verify_bundle(BUNDLE, signature, cert, ca, claims.replace("abc123", "zzz999"))


def test_a_signature_outside_its_window_is_refused(kits):
    """A job signed to start tomorrow, or one whose window has passed, is refused with the time named."""
    key, cert, ca = material(kits)
    now = dt.datetime.now(dt.UTC).timestamp()
    with pytest.raises(SignatureRefused, match="not valid before"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key, now=now + 86400), cert, ca)
    with pytest.raises(SignatureRefused, match="expired at"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key, now=now - 7200, valid_for_s=3600), cert, ca)


def test_old_and_unknown_signature_formats_are_refused_clearly(kits):
    """A v1 signature (no claims) and an unknown format version are refused with a sentence, not a crash."""
    key, cert, ca = material(kits)
    signature, claims = sign(BUNDLE, key)
    with pytest.raises(SignatureRefused, match="old format"):
        verify_bundle(BUNDLE, signature, cert, ca, "")
    with pytest.raises(SignatureRefused, match="format v9"):
        verify_bundle(BUNDLE, signature, cert, ca, claims.replace('"v":2', '"v":9'))
    with pytest.raises(SignatureRefused, match="not JSON"):
        verify_bundle(BUNDLE, signature, cert, ca, "{nope")


def test_a_traversal_job_id_in_claims_is_refused(kits):
    """Claims whose job id is not a plain folder name are refused."""
    key, cert, ca = material(kits)
    with pytest.raises(SignatureRefused, match="job id"):
        verify_bundle_v2(BUNDLE, sign(BUNDLE, key, job_id="../../startup"), cert, ca)
