"""Spare job processes (`process.spare_process`): started ahead, handed a job, never used once dead; readiness pipes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flctl.node.config.resources import load_resources
from flctl.node.process import readiness
from flctl.node.process.spare_process import SPARE_FLAG, SpareProcess

ECHO = """
import sys
from flctl.node.process import spare_process

args = spare_process.wait_for_job()
if args is None:
    sys.exit(3)
print("ran", *args, flush=True)
sys.stderr.write("and said so on stderr\\n")
"""


def spare(code: str, enabled: bool = True) -> SpareProcess:
    return SpareProcess([sys.executable, "-c", code, SPARE_FLAG], enabled, stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL, start_new_session=True)


def test_a_job_handed_to_a_spare_runs_with_its_output_in_the_named_file(tmp_path: Path) -> None:
    """The spare gets the job's arguments and appends its stdout and stderr to the file the daemon names."""
    # Prepare
    spares = spare(ECHO)
    spares.ensure()
    out = tmp_path / "job.log"
    out.write_text("before\n")
    # Execute
    process = spares.take(["a", "b c"], output=out)
    assert process is not None
    code = process.wait(30)
    # Assert
    assert code == 0
    assert out.read_text().splitlines() == ["before", "ran a b c", "and said so on stderr"]
    assert spares.take(["again"]) is None  # taken: the next job starts a fresh process unless ensure() runs


def test_a_spare_that_exited_is_not_used(tmp_path: Path) -> None:
    """A spare that died while waiting is reaped and `take` says to start a fresh process."""
    # Prepare
    spares = spare("import sys; sys.exit(7)")
    spares.ensure()
    assert spares.pid is not None
    os.waitid(os.P_PID, spares.pid, os.WEXITED | os.WNOWAIT)  # it has exited (not reaped yet)
    # Execute
    taken = spares.take(["x"], output=tmp_path / "log")
    # Assert
    assert taken is None
    assert not (tmp_path / "log").exists()


def test_close_kills_the_waiting_spare_and_starts_no_other() -> None:
    """Stopping the daemon kills its spare; `ensure` afterwards starts nothing."""
    # Prepare
    spares = spare(ECHO)
    spares.ensure()
    # Execute
    spares.close()
    spares.ensure()
    # Assert
    assert spares.take(["x"]) is None


@pytest.mark.parametrize("module", ["flctl.node.server.job_process", "flctl.node.site.job_process"])
def test_a_spare_job_process_exits_when_its_daemon_goes_away(module: str) -> None:
    """The real job process modules, started as spares, exit quietly on end-of-file (their daemon died)."""
    # Prepare
    process = subprocess.Popen([sys.executable, "-m", module, SPARE_FLAG], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    # Execute
    out, err = process.communicate(b"", timeout=60)
    # Assert
    assert process.returncode == 0, err
    assert out == b""


def test_a_spare_process_that_is_not_wanted_is_never_started(tmp_path: Path) -> None:
    """`spare_job_process: false` in the node's own local/resources.yml turns spares off: none is started."""
    # Prepare
    off = tmp_path / "resources.yml"
    off.write_text("api_version: 1\nmax_concurrent_jobs: 2\nspare_job_process: false\n")
    spares = spare(ECHO, enabled=load_resources(off).spare_job_process)
    # Execute
    spares.ensure()
    # Assert
    assert spares.pid is None
    assert spares.take(["x"]) is None


def test_a_spare_needs_a_pipe_on_stdin_and_a_session_of_its_own() -> None:
    """Without them the handover (stdin) or the job's clean-up (its process group) could not work."""
    with pytest.raises(ValueError, match="session of its own"):
        SpareProcess([sys.executable, "-c", "", SPARE_FLAG], stdin=subprocess.PIPE)
    with pytest.raises(ValueError, match="--spare"):
        SpareProcess([sys.executable, "-c", ""], stdin=subprocess.PIPE, start_new_session=True)


def test_ready_pipe_writes_ready_once_and_hides_its_name_from_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node takes $FLCTL_READY_FD out of its environment at once, then writes `ready` and closes the pipe."""
    # Prepare
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv(readiness.READY_FD_ENV, str(write_fd))
    # Execute
    pipe = readiness.ReadyPipe()
    hidden = readiness.READY_FD_ENV not in os.environ
    pipe.notify()
    pipe.notify()
    data = os.read(read_fd, 64)
    eof = os.read(read_fd, 64)
    os.close(read_fd)
    # Assert
    assert hidden
    assert data == readiness.READY
    assert eof == b""


def test_start_gate_opens_when_the_starter_closes_its_pipe_or_the_node_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site waits for end-of-file on $FLCTL_START_AFTER_FD; `open()` (the site stopping) ends the wait too."""
    # Prepare
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv(readiness.START_AFTER_FD_ENV, str(read_fd))
    gate = readiness.StartGate()
    monkeypatch.delenv(readiness.START_AFTER_FD_ENV, raising=False)
    other = readiness.StartGate()  # no variable: open
    waited = threading.Event()

    def wait() -> None:
        gate.wait()
        waited.set()

    waiter = threading.Thread(target=wait)
    # Execute
    waiter.start()
    before = waited.wait(0.2)
    os.close(write_fd)
    waiter.join(30)
    stopped = readiness.StartGate()
    stopped.open()
    stopped.wait()
    other.wait()
    # Assert
    assert not before
    assert waited.is_set()
