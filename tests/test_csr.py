"""Keys that never leave a site: request, sign, complete, verify, and a TLS handshake with the site's own key."""

from __future__ import annotations

import stat

import pytest

from flctl.provisioner.build import provision
from flctl.provisioner.csr import complete_kit, make_request, sign_request
from flctl.provisioner.errors import InputError
from flctl.provisioner.project_loader import load_project
from flctl.provisioner.signing import verify_kit

from .conftest import LOCAL_PROJECT
from .test_certificates import _handshake


@pytest.fixture
def project():
    return load_project(LOCAL_PROJECT).project


def test_round_trip(project, tmp_path):
    """request -> sign -> complete: the kit verifies and the site's own key completes a mutual TLS handshake."""
    ws = tmp_path / "ws"
    request = make_request("site-1", "local", "site", None, tmp_path / "at-site")
    assert stat.S_IMODE(request.key_path.stat().st_mode) == 0o600
    kit = sign_request(project, ws, request.csr_path)
    assert kit.external_key and not (kit.kit_dir / "startup/site.key").exists()
    assert kit.zip_path.is_file()
    assert verify_kit(kit.kit_dir).problems == [
        "startup/site.key is missing: this kit was made from a certificate request; add your key with "
        "`flctl kit complete`"]
    report = complete_kit(kit.kit_dir, request.key_path)
    assert report.ok, report.problems
    assert (kit.kit_dir / "startup/site.key").read_bytes() == request.key_path.read_bytes()
    prod = provision(project, ws).prod_dir
    seen = _handshake(prod / "localhost", kit.kit_dir, "site", prod / "localhost/startup/ca.crt")
    assert seen == "site-1"


def test_later_provisioning_keeps_the_signed_certificate_without_a_key(project, tmp_path):
    ws = tmp_path / "ws"
    request = make_request("site-2", "local", "site", None, tmp_path / "req")
    kit = sign_request(project, ws, request.csr_path)
    result = provision(project, ws)
    site2 = next(k for k in result.kits if k.name == "site-2")
    assert site2.status == "kept" and site2.external_key
    assert not (result.prod_dir / "site-2/startup/site.key").exists()
    assert (result.prod_dir / "site-2/startup/site.crt").read_bytes() == (
        kit.kit_dir / "startup/site.crt").read_bytes()
    state = (result.state_dir / "issued.json").read_text()
    assert request.key_path.read_text() not in state


def test_admin_request_carries_its_role(project, tmp_path):
    request = make_request("admin@localhost", "local", "admin", "project_admin", tmp_path / "req")
    kit = sign_request(project, tmp_path / "ws", request.csr_path)
    assert complete_kit(kit.kit_dir, request.key_path).ok


def test_request_for_an_unknown_participant_is_refused(project, tmp_path):
    request = make_request("site-9", "local", "site", None, tmp_path / "req")
    with pytest.raises(InputError, match="'site-9' is not a participant of project 'local'"):
        sign_request(project, tmp_path / "ws", request.csr_path)


def test_request_with_the_wrong_org_is_refused(project, tmp_path):
    request = make_request("site-1", "evil", "site", None, tmp_path / "req")
    with pytest.raises(InputError, match=r"org: the request says 'evil' but project\.yml says 'local'"):
        sign_request(project, tmp_path / "ws", request.csr_path)


def test_request_claiming_a_higher_role_is_refused(project, tmp_path):
    request = make_request("admin@localhost", "local", "admin", "lead", tmp_path / "req")
    with pytest.raises(InputError, match="role: the request says 'lead'"):
        sign_request(project, tmp_path / "ws", request.csr_path)


def test_garbage_request_is_refused(project, tmp_path):
    bad = tmp_path / "bad.csr"
    bad.write_text("not a request")
    with pytest.raises(InputError, match="is not a PEM certificate signing request"):
        sign_request(project, tmp_path / "ws", bad)


def test_completing_with_the_wrong_key_is_refused(project, tmp_path):
    request = make_request("site-1", "local", "site", None, tmp_path / "a")
    other = make_request("site-1", "local", "site", None, tmp_path / "b")
    kit = sign_request(project, tmp_path / "ws", request.csr_path)
    with pytest.raises(InputError, match="does not match"):
        complete_kit(kit.kit_dir, other.key_path)
    assert not (kit.kit_dir / "startup/site.key").exists()


def test_request_never_overwrites(tmp_path):
    make_request("site-1", "local", "site", None, tmp_path)
    with pytest.raises(InputError, match="already exists"):
        make_request("site-1", "local", "site", None, tmp_path)


def test_request_validates_names(tmp_path):
    with pytest.raises(InputError) as info:
        make_request("bad name", "org", "admin", None, tmp_path)
    assert [p.field for p in info.value.problems] == ["name", "role"]
