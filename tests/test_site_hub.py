"""Commands for site daemons: delivered in order, and none lost to a stream whose call has ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flctl.node.server.site_hub import SiteHub


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


def test_a_stream_ends_when_its_call_ends_without_polling():
    """The call's end callback wakes the waiting stream at once (it does not wait out ACTIVE_CHECK_S)."""
    hub = SiteHub()
    ended: list[Callable[[], None]] = []
    alive = [True]
    stream = hub.stream("site-1", lambda: alive[0], ended.append)
    result: list[list[dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: result.append(list(stream)))
    reader.start()
    while not ended:  # the generator registers its callback once it runs
        time.sleep(0.01)
    alive[0] = False
    ended[0]()

    reader.join(5)
    assert not reader.is_alive() and result == [[]]


def test_recheck_ends_a_stream_whose_site_was_revoked():
    hub = SiteHub()
    revoked = [False]
    waiting: list[Callable[[], None]] = []
    stream = hub.stream("site-1", lambda: not revoked[0], waiting.append)
    result: list[list[dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: result.append(list(stream)))
    reader.start()
    while not waiting:  # the stream has its queue
        time.sleep(0.01)
    revoked[0] = True
    hub.recheck()

    reader.join(5)
    assert not reader.is_alive() and result == [[]]
    hub.push("site-1", {"start": {"job_id": "j"}})  # commands still wait for the site's next stream
    assert next(hub.stream("site-1", lambda: True)) == {"start": {"job_id": "j"}}
