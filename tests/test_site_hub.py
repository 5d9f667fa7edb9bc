"""Commands for site daemons: delivered in order, and none lost to a stream whose call has ended."""

from __future__ import annotations

from node.server.site_hub import SiteHub


def test_a_command_taken_by_a_stream_that_ended_goes_to_the_next_one_in_order():
    """A stream closed right after taking a command (its send failed: the site was reconnecting) puts it back first."""
    hub = SiteHub()
    hub.push("site-1", {"start": {"job_id": "j"}})
    hub.push("site-1", {"stop": {"job_id": "j"}})
    stale = hub.stream("site-1", lambda: True)
    assert next(stale) == {"start": {"job_id": "j"}}

    stale.close()
    fresh = hub.stream("site-1", lambda: True)

    assert [next(fresh), next(fresh)] == [{"start": {"job_id": "j"}}, {"stop": {"job_id": "j"}}]


def test_a_command_for_a_stream_no_longer_active_waits_for_the_next_stream():
    """The call ends while the stream waits: the command it then takes is kept for the site's next stream."""
    hub = SiteHub()
    checks = iter([True, False])  # active when it starts waiting, over once the command comes
    stale = hub.stream("site-1", lambda: next(checks, False))
    hub.push("site-1", {"start": {"job_id": "j"}})

    assert list(stale) == []
    assert next(hub.stream("site-1", lambda: True)) == {"start": {"job_id": "j"}}
