"""Kit signatures: an intact kit verifies; every kind of tampering is named."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import load_project
from flctl.provisioner.signing import verify_kit

SITE_FILES = ["ca.crt", "site.crt", "site.key", "node.yml", "start.sh", "stop.sh"]


def test_every_fresh_kit_verifies(local_kits):
    for kit in local_kits.kits:
        report = verify_kit(kit.kit_dir)
        assert report.ok, report.problems
        assert (report.participant, report.kind) == (kit.name, kit.kind)


def test_signature_covers_every_startup_file(local_kits):
    sig = json.loads((local_kits.prod_dir / "site-1/startup/signature.json").read_text())
    assert sorted(sig["files"]) == sorted(SITE_FILES)
    assert sig["participant"] == "site-1" and sig["external_key"] is None


@pytest.mark.parametrize("name", SITE_FILES)
def test_changing_any_startup_file_is_detected(kit_copy, name):
    """One byte added to any signed file: the report names exactly that file."""
    kit = kit_copy("site-1")
    with open(kit / "startup" / name, "ab") as handle:
        handle.write(b"\n")
    report = verify_kit(kit)
    assert f"startup/{name} was changed" in report.problems


def test_missing_file_is_named(kit_copy):
    kit = kit_copy("site-1")
    (kit / "startup/stop.sh").unlink()
    assert verify_kit(kit).problems == ["startup/stop.sh is missing"]


def test_extra_file_is_named(kit_copy):
    kit = kit_copy("site-1")
    (kit / "startup/backdoor.sh").write_text("#!/bin/sh\n")
    assert verify_kit(kit).problems == ["startup/backdoor.sh is not part of the signed kit"]


def test_symlink_replacing_a_file_is_refused(kit_copy, tmp_path):
    kit = kit_copy("site-1")
    target = tmp_path / "elsewhere.yml"
    target.write_bytes((kit / "startup/node.yml").read_bytes())
    (kit / "startup/node.yml").unlink()
    os.symlink(target, kit / "startup/node.yml")
    assert "startup/node.yml was replaced by a symbolic link" in verify_kit(kit).problems


def test_local_folder_is_not_signed(kit_copy):
    """Sites own local/: editing it never breaks the kit."""
    kit = kit_copy("site-1")
    (kit / "local/policy.yml").write_text("api_version: 1\nroles: {}\n")
    assert verify_kit(kit).ok


def test_edited_signature_is_refused(kit_copy):
    """Rewriting signature.json to match an edited file breaks the CA signature."""
    kit = kit_copy("site-1")
    sig_path = kit / "startup/signature.json"
    sig = json.loads(sig_path.read_text())
    sig["files"]["node.yml"] = "0" * 64
    sig_path.write_text(json.dumps(sig))
    (problem,) = verify_kit(kit).problems
    assert problem.startswith("startup/signature.json does not verify against the project CA")


def test_kit_resigned_by_another_ca_fails_when_the_ca_is_pinned(kit_copy, tmp_path, write_project):
    """A whole kit swapped for another project's is self-consistent, but not with the trusted CA."""
    other = provision(load_project(write_project("api_version: 1\nname: other\nserver: {name: localhost, org: o}\n"
                                                 "sites: [{name: site-1, org: o}]\n")).project, tmp_path / "ws")
    from cryptography import x509

    trusted = x509.load_pem_x509_certificate((kit_copy("site-2") / "startup/ca.crt").read_bytes())
    report = verify_kit(other.prod_dir / "site-1", trusted)
    assert report.problems == ["startup/ca.crt is not the trusted project CA"]


def test_expired_certificate_is_named(local_kits):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    (problem,) = verify_kit(local_kits.prod_dir / "site-1", now=later).problems
    assert problem.startswith("startup/site.crt expired on ")


def test_key_that_does_not_match_is_named(kit_copy, local_kits):
    kit = kit_copy("site-1")
    (kit / "startup/site.key").write_bytes((local_kits.prod_dir / "site-2/startup/site.key").read_bytes())
    problems = verify_kit(kit).problems
    assert "startup/site.crt was changed" not in problems
    assert "startup/site.key does not match startup/site.crt" in problems


def test_not_a_kit(tmp_path):
    assert verify_kit(tmp_path).problems == [f"{tmp_path} is not a startup kit (no startup/ folder)"]


def test_startup_folder_is_accepted_as_the_kit(local_kits):
    assert verify_kit(local_kits.prod_dir / "site-1" / "startup").ok


def test_unsigned_kit(kit_copy):
    kit = kit_copy("site-1")
    (kit / "startup/signature.json").unlink()
    assert verify_kit(kit).problems == ["startup/signature.json is missing: the kit is not signed"]
