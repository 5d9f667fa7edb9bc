"""Alert conditions and their book, pure: facts in, alerts to fire and to clear out (no I/O)."""

from __future__ import annotations

from flctl.node.config.alerts import CONDITIONS
from flctl.node.server.alert_rules import MIB, AlertBook, CertLeft, Facts, FailedJob, holding


def keys(alerts):
    return [a.key for a in alerts]


def test_each_condition_holds_from_its_facts():
    """Offline sites, failed jobs, certificates under the days, and free disk under the floor each make one alert."""
    facts = Facts(("site-2",), (FailedJob("j1", "mnist", "boom"),),
                  (CertLeft("site-1", "site", 12.4), CertLeft("admin@x", "admin", -1), CertLeft("srv", "server", 400)),
                  "/ws", 100 * MIB)
    found = holding(facts, CONDITIONS, cert_days=30, disk_low_mb=1024)
    assert sorted(found) == [("cert_expiring", "admin@x"), ("cert_expiring", "site-1"), ("disk_low", "/ws"),
                             ("job_failed", "j1"), ("site_offline", "site-2")]
    assert found[("cert_expiring", "site-1")].message == "the certificate of site site-1 expires in 12 days"
    assert found[("cert_expiring", "admin@x")].message == "the certificate of admin admin@x has expired"
    assert found[("job_failed", "j1")].details == {"job_id": "j1", "name": "mnist", "error": "boom"}
    assert found[("disk_low", "/ws")].details == {"workspace": "/ws", "free_mb": 100.0, "full": False}


def test_only_the_conditions_asked_for_and_the_thresholds_apply():
    facts = Facts(("site-2",), (), (CertLeft("site-1", "site", 12.0),), "/ws", 2048 * MIB)
    assert sorted(holding(facts, ["site_offline"], 30, 1024)) == [("site_offline", "site-2")]
    assert holding(facts, ["cert_expiring", "disk_low"], cert_days=10, disk_low_mb=1024) == {}
    full = Facts(workspace="/ws", disk_free_bytes=2048 * MIB, disk_full=True)
    assert list(holding(full, CONDITIONS, 30, 1024)) == [("disk_low", "/ws")]
    assert holding(Facts(workspace="/ws", disk_free_bytes=None), CONDITIONS, 30, 1024) == {}


def test_an_alert_fires_once_while_its_condition_holds_and_clears_when_it_stops():
    """Fire on the first check that sees it, nothing while it lasts, clear once, fire again if it comes back."""
    book = AlertBook()
    offline = holding(Facts(("site-2",)), CONDITIONS, 30, 0)
    both = holding(Facts(("site-1", "site-2")), CONDITIONS, 30, 0)
    fire, clear = book.update(offline)
    assert keys(fire) == [("site_offline", "site-2")] and clear == []
    assert book.update(offline) == ([], [])
    fire, clear = book.update(both)
    assert keys(fire) == [("site_offline", "site-1")] and clear == []
    fire, clear = book.update({})
    assert fire == [] and keys(clear) == [("site_offline", "site-1"), ("site_offline", "site-2")]
    assert book.update({}) == ([], [])
    assert keys(book.update(offline)[0]) == [("site_offline", "site-2")]


def test_a_changed_message_is_not_a_new_alert():
    """The days left shrink from check to check: still the same alert (keyed by condition and subject)."""
    book = AlertBook()
    book.update(holding(Facts(certificates=(CertLeft("s", "site", 20.0),)), CONDITIONS, 30, 0))
    assert book.update(holding(Facts(certificates=(CertLeft("s", "site", 19.0),)), CONDITIONS, 30, 0)) == ([], [])
