"""`flctl node stop` signals only the node its PID file names: a stale file pointing at another live process is
removed and that process is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.node.process import pidfile

from .federation import Federation, make_federation, pid_alive


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("content", ["{pid}\n", "{pid}\n1\n[\"flctl\", \"node\", \"start\"]\n",
                                     "{pid}\n{ticks}\n[\"flctl\", \"node\", \"start\", \"kit\"]\n"],
                         ids=["old-format", "other-start-time", "other-command"])
def test_a_stale_pid_file_naming_another_process_is_not_signalled(flctl, kit_copy, sleeper, content):
    """A PID file naming a live `sleep` (old format, another start time, another command) is removed, exit 1."""
    kit = kit_copy("site-1")
    workspace = kit / "workspace"
    workspace.mkdir(exist_ok=True)
    ticks = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    (workspace / pidfile.NAME).write_text(content.format(pid=sleeper.pid, ticks=ticks))
    result = flctl("node", "stop", kit)
    assert result.code == 1, result.stderr
    assert "not running" in result.stderr and str(sleeper.pid) in result.stderr and "stale" in result.stderr
    assert sleeper.poll() is None  # not signalled
    assert not (workspace / pidfile.NAME).exists()


def test_no_pid_file_says_not_running(flctl, kit_copy):
    """Without a PID file, stop says the node is not running (exit 1)."""
    result = flctl("node", "stop", kit_copy("site-1"))
    assert result.code == 1 and "not running" in result.stderr


def test_stop_ends_the_real_node(tmp_path: Path):
    """The PID file a started node writes names it: `flctl node stop` ends it (exit 0)."""
    fed: Federation = make_federation(tmp_path, sites=1)
    proc = fed.start("localhost")
    try:
        path = fed.kit("localhost") / "workspace" / pidfile.NAME
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(path.read_text().splitlines()[0])
        assert json.loads(path.read_text().splitlines()[2])  # its command line
        out = fed.flctl("node", "stop", fed.kit("localhost"))
        assert out.returncode == 0, out.stderr
        assert not pid_alive(pid)
        proc.wait(30)
    finally:
        fed.stop_all()
        assert os.path.isdir(tmp_path)


def test_a_stop_between_registering_and_the_command_stream_ends_the_site(tmp_path: Path):
    """A SIGTERM that lands after the site has registered but before it has opened its command stream (scancel a
    second after a Slurm job came online did, on a loaded machine) still ends the site: stop() came before there
    was a call to cancel, so the session cancels the call itself. Before, the site waited on the stream until
    Slurm's KillWait and SIGKILL (no clean stop)."""
    import threading

    from flctl.node.config.kit import load_kit
    from flctl.node.site.agent import SiteAgent

    fed: Federation = make_federation(tmp_path, sites=1)
    fed.start("localhost")
    try:
        agent = SiteAgent(load_kit(fed.kit("site-1"), verify=True), tmp_path / "site-1-workspace")
        ensure, reached = agent._spare.ensure, []

        def stopped_meanwhile() -> None:  # registered; the command stream not yet opened: the signal lands here
            reached.append(True)
            agent.stop()
            ensure()

        agent._spare.ensure = stopped_meanwhile  # type: ignore[method-assign]
        run = threading.Thread(target=agent.run, daemon=True)
        run.start()
        run.join(60)
        assert reached, fed.logs()  # it did register: the stop came in that window
        assert not run.is_alive(), "the site kept waiting on its command stream after stop()"
    finally:
        fed.stop_all()
