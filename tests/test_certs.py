"""`flctl certs` offline from a provisioning workspace, and `flctl certs renew --expiring DAYS`."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from flctl.provisioner.build import provision
from flctl.provisioner.cert_expiry import expiring, issued_certificates
from flctl.provisioner.project_loader import load_project

from .conftest import LOCAL_PROJECT

DAY = dt.timedelta(days=1)


@pytest.fixture
def aging(tmp_path: Path) -> Path:
    """The local project provisioned 340 days ago (365-day certificates: 25 days left), then site-2 renewed today."""
    project = load_project(LOCAL_PROJECT).project
    provision(project, tmp_path, now=dt.datetime.now(dt.UTC) - 340 * DAY)
    provision(project, tmp_path, renew=frozenset({"site-2"}))
    return tmp_path


def test_issued_certificates_are_sorted_by_expiry_and_expiring_picks_those_under_the_days(aging):
    """Soonest first; `expiring(30)` is every certificate but the renewed site-2, `expiring(20)` none."""
    certs = issued_certificates(aging / "local")
    now = time.time()
    assert certs[-1].name == "site-2" and certs[-1].days_left(now) == pytest.approx(365, abs=0.1)
    assert [c.not_after for c in certs] == sorted(c.not_after for c in certs)
    assert {c.name for c in expiring(certs, 30, now)} == {"localhost", "site-1", "admin@localhost"}
    assert all(c.days_left(now) == pytest.approx(25, abs=0.1) for c in expiring(certs, 30, now))
    assert expiring(certs, 20, now) == []
    assert {c.kind for c in certs} == {"server", "site", "admin"}


def test_certs_offline_json_and_table(flctl, aging):
    """`flctl certs -p` lists every issued certificate with its days left, sorted, marking those under 30 days."""
    result = flctl("certs", "-p", LOCAL_PROJECT, "-w", aging, "--json")
    assert result.code == 0, result.stderr
    rows = result.json()
    assert [r["name"] for r in rows][-1] == "site-2"
    assert {r["name"]: r["expiring"] for r in rows} == {"localhost": True, "site-1": True, "admin@localhost": True,
                                                        "site-2": False}
    assert set(rows[0]) == {"name", "kind", "org", "role", "not_after", "days_left", "expiring", "expired"}
    assert rows[0]["days_left"] == pytest.approx(25, abs=0.1)
    table = flctl("certs", "ls", "-p", LOCAL_PROJECT, "-w", aging)
    assert table.code == 0 and "expiring" in table.stdout
    assert "3 certificate(s) expire within 30 days" in table.stderr


def test_certs_renew_expiring_renews_exactly_those_and_names_the_kits_to_deliver(flctl, aging):
    """The three under 30 days are re-issued (one new prod_NN), site-2 is kept, and their kits are named."""
    dry = flctl("certs", "renew", "--expiring", "30", "-p", LOCAL_PROJECT, "-w", aging, "--dry-run", "--json")
    assert dry.code == 0 and sorted(dry.json()["would_renew"]) == ["admin@localhost", "localhost", "site-1"]
    assert not (aging / "local" / "prod_02").exists()
    result = flctl("certs", "renew", "--expiring", "30", "-p", LOCAL_PROJECT, "-w", aging, "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert sorted(data["renewed"]) == ["admin@localhost", "localhost", "site-1"]
    assert {k["name"]: k["status"] for k in data["kits"]}["site-2"] == "kept"
    assert sorted(r["name"] for r in data["redeliver"]) == ["admin@localhost", "localhost", "site-1"]
    assert all(Path(r["zip"]).is_file() and "prod_02" in r["zip"] for r in data["redeliver"])
    after = flctl("certs", "-p", LOCAL_PROJECT, "-w", aging, "--json").json()
    assert not any(r["expiring"] for r in after)
    again = flctl("certs", "renew", "--expiring", "30", "-p", LOCAL_PROJECT, "-w", aging)
    assert again.code == 0 and "no certificate" in again.stderr
    assert not (aging / "local" / "prod_03").exists()


def test_certs_offline_without_a_state_exits_2(flctl, tmp_path):
    """A workspace where the project was never provisioned: exit 2 naming the folder, no traceback."""
    for args in (("certs", "-p", LOCAL_PROJECT, "-w", tmp_path),
                 ("certs", "renew", "--expiring", "30", "-p", LOCAL_PROJECT, "-w", tmp_path)):
        result = flctl(*args)
        assert result.code == 2 and "never provisioned" in result.stderr and "Traceback" not in result.stderr
