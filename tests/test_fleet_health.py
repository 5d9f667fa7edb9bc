"""Certificates and fleet health through a real server: `flctl certs`, `site ls` marks, the Prometheus endpoint
and alert hooks (a webhook on 127.0.0.1 and a command)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

from .federation import Federation, free_port, project_text, running


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Two sites whose certificates (10-day ones) all expire within 30 days; the server and site-1 run."""
    root = tmp_path_factory.mktemp("fleet")
    port = free_port()
    text = project_text("fleet", port, 2) + "certs: {valid_days: 10}\n"
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    fed = Federation(root, result.prod_dir, port, ["site-1", "site-2"])
    with running(fed, ["site-1"]):
        yield fed


def test_certs_through_the_server_lists_every_participant_sorted(fleet):
    """The server's, the running site's and the calling admin's certificates, each 10 days from expiry."""
    fleet.flctl("site", "ls")  # the admin has called at least once
    rows = fleet.flctl_json("certs")
    assert {(r["name"], r["kind"]) for r in rows} == {("localhost", "server"), ("site-1", "site"),
                                                      ("admin@hub.org", "admin")}
    assert [r["days_left"] for r in rows] == sorted(r["days_left"] for r in rows)
    assert all(r["expiring"] and r["days_left"] == pytest.approx(10, abs=0.1) for r in rows)
    admin = next(r for r in rows if r["kind"] == "admin")
    assert admin["role"] == "project_admin" and admin["org"] == "hub"


def test_site_ls_marks_certificates_under_30_days(fleet):
    sites = fleet.flctl_json("site", "ls")
    site1 = next(s for s in sites if s["name"] == "site-1")
    assert site1["cert_expiring"] is True and site1["cert_days_left"] == pytest.approx(10, abs=0.1)
    table = fleet.flctl("site", "ls")
    assert "(expiring)" in table.stdout and "expires in 10 days" in table.stderr
