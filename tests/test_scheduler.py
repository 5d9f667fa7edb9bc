"""Where and when a submitted job may start (pure placement rules)."""

from __future__ import annotations

from flctl.node.server.scheduler import placement
from flctl.node.server.store import JobRow


def job(sites: list[str] | str, min_sites: int) -> JobRow:
    return JobRow("j", "n", "SUBMITTED", "a", "o", "lead", 0.0, 0.0, 0.0, -1, 3, "fedavg", min_sites, sites, "", "",
                  "sha", {})


def test_all_sites_start_when_enough_are_online():
    """sites: all starts on every online site once min_sites are online."""
    assert placement(job("all", 2), ["b", "a"]) == (["a", "b"], "")


def test_all_sites_wait_with_a_reason():
    assert placement(job("all", 3), ["a", "b"]) == (None, "waiting for 3 sites online (2 online)")


def test_named_sites_must_all_be_online():
    assert placement(job(["a", "c"], 1), ["a", "b"]) == (None, "waiting for c to come online")
    assert placement(job(["a", "b"], 2), ["a", "b", "c"]) == (["a", "b"], "")
