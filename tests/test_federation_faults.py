"""Sites go offline and come back; the server restarts: the federation heals by itself."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from .federation import FLCTL, Federation, make_federation, running


@pytest.fixture
def fed(tmp_path) -> Iterator[Federation]:
    with running(make_federation(tmp_path)) as federation:
        yield federation


def online(fed: Federation) -> dict[str, bool]:
    return {s["name"]: s["online"] for s in fed.flctl_json("site", "ls")}


def test_a_silent_site_is_marked_offline_and_rejoins(fed):
    """A stopped site is offline after the heartbeat timeout (3 s here); started again, it is online."""
    fed.stop("site-2")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and online(fed)["site-2"]:
        time.sleep(0.3)
    assert online(fed) == {"site-1": True, "site-2": False}
    fed.start("site-2")
    fed.wait_online(["site-2"])


def test_sites_reconnect_after_a_server_restart(fed):
    """The server goes away and comes back on the same port: sites re-register with backoff, jobs run again."""
    fed.stop("localhost")
    time.sleep(1.0)
    fed.start("localhost")
    fed.wait_online(fed.sites, timeout=40)
    from .test_federation import JOBS

    out = fed.flctl("job", "submit", JOBS / "hello-numpy", "--watch")
    assert out.returncode == 0, out.stderr + fed.logs()


def test_stop_script_stops_the_node(fed):
    """The kit's stop.sh ends the node started from that kit."""
    proc = fed.processes["site-1"]
    out = subprocess.run(["bash", str(fed.kit("site-1") / "startup" / "stop.sh")], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "FLCTL": FLCTL}, check=False)
    assert out.returncode == 0, out.stderr
    assert proc.wait(10) == 0
