"""`flctl node health KIT [--live]`, the probe of the containers, against a real local federation."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.federation import FLCTL, make_federation, running


def health(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, "node", "health", *map(str, args)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_health_is_0_while_the_nodes_run_and_1_once_they_stopped(tmp_path: Path) -> None:
    """Ready: the server answers TLS with the project's CA (its own kit and a site's); live: its PID file."""
    federation = make_federation(tmp_path, sites=1)
    server, site = federation.kit("localhost"), federation.kit("site-1")
    with running(federation):
        up = [health(server), health(server, "--live"), health(site), health(site, "--live")]
    down = [health(server), health(server, "--live"), health(site)]
    assert [done.returncode for done in up] == [0, 0, 0, 0], [done.stderr for done in up]
    assert "answers TLS with a certificate of the project's CA" in up[0].stdout + up[0].stderr
    assert [done.returncode for done in down] == [1, 1, 1]
    assert "does not answer TLS" in down[0].stderr and "not running" in down[1].stderr
    assert "Traceback" not in "".join(done.stderr for done in up + down)
