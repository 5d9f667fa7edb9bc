"""`flctl poc`: a real local federation (processes, mTLS on 127.0.0.1) prepared, started, used, stopped, cleaned."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.cloud.local import descendants

from .federation import FLCTL, _kill_group, pid_alive


def flctl(workspace: Path, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`flctl ARGS` with the local federation in `workspace` as the default one (and no other kit)."""
    env = {k: v for k, v in os.environ.items() if k != "FLCTL_KIT"}
    env["FLCTL_POC_WORKSPACE"] = str(workspace)
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


SLEEPER = """
import time
import flctl.client as fl

fl.init()
while fl.running():
    fl.receive()
    time.sleep(600)  # still training when the federation is stopped
"""


def sleeping_job(root: Path) -> Path:
    job = root / "sleeper"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(SLEEPER)
    (job / "job.yml").write_text("api_version: 1\nname: sleeper\nworkflow: {type: fedavg, args: {rounds: 1}}\n"
                                 "min_sites: 2\n")
    return job


def wait_for_scripts(site_pids: list[int], timeout: float = 60) -> set[int]:
    """Descendants of the site daemons once each runs a job process and its script."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [descendants(pid) for pid in site_pids]
        if all(len(tree) >= 2 for tree in found):
            return set().union(*found)
        time.sleep(0.1)
    raise AssertionError("the sites did not start the job's scripts")


def run_pids(workspace: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in sorted((workspace / "run").glob("*.pid"))]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "poc"
    yield root
    if (root / "run").is_dir():  # a failed test must not leave nodes behind
        flctl(root, "poc", "stop")
        for pid in run_pids(root):
            _kill_group(pid)


def test_prepare_start_run_a_job_stop_and_clean_leave_no_process(workspace: Path) -> None:
    """The whole life of a local federation: jobs use its admin kit by default; stop, in the middle of a job,
    leaves no process behind."""
    # Prepare
    prepared = flctl(workspace, "poc", "prepare", "-n", "2", "--json")
    assert prepared.returncode == 0, prepared.stderr
    # Execute
    started = flctl(workspace, "poc", "start", "--json")
    assert started.returncode == 0, started.stderr
    status = json.loads(flctl(workspace, "poc", "status", "--json").stdout)
    submitted = flctl(workspace, "job", "submit", sleeping_job(workspace.parent), "--json")
    refused_clean = flctl(workspace, "poc", "clean")
    nodes = run_pids(workspace)
    scripts = wait_for_scripts(nodes[1:])
    tree = set(nodes) | scripts | descendants(nodes[0])
    stopped = flctl(workspace, "poc", "stop", "--json")
    after = json.loads(flctl(workspace, "poc", "status", "--json").stdout)
    cleaned = flctl(workspace, "poc", "clean")
    # Assert
    assert json.loads(prepared.stdout)["sites"] == ["site-1", "site-2"]
    assert [n["name"] for n in status["nodes"]] == ["localhost", "site-1", "site-2"]
    assert all(n["alive"] for n in status["nodes"])
    assert status["sites_online"] == ["site-1", "site-2"]
    assert json.loads(started.stdout)["seconds"] > 0
    assert submitted.returncode == 0, submitted.stderr  # as the local federation's admin: no --kit, no FLCTL_KIT
    assert refused_clean.returncode == 2
    assert "poc stop" in refused_clean.stderr
    assert stopped.returncode == 0, stopped.stderr
    assert len(nodes) == 3
    assert len(tree) >= 3 + 4 + 1  # nodes, each site's job process and script, the server's job process
    assert [pid for pid in tree if pid_alive(pid)] == []
    assert not any(n["alive"] for n in after["nodes"])
    assert cleaned.returncode == 0, cleaned.stderr
    assert not workspace.exists()


def test_commands_without_a_prepared_federation_say_what_to_do(workspace: Path) -> None:
    """start/status/stop before prepare, and prepare twice, are usage errors (exit 2) naming the next command."""
    # Prepare
    missing = [flctl(workspace, "poc", verb) for verb in ("start", "status", "stop", "clean")]
    first = flctl(workspace, "poc", "prepare", "-n", "1")
    # Execute
    again = flctl(workspace, "poc", "prepare")
    # Assert
    for out in missing:
        assert out.returncode == 2
        assert "flctl poc prepare" in out.stderr
    assert first.returncode == 0, first.stderr
    assert again.returncode == 2
    assert "flctl poc clean" in again.stderr


def test_start_says_which_node_exited_while_starting_and_leaves_no_process(workspace: Path) -> None:
    """A server that cannot listen (its port is taken) ends `poc start` at once: exit 1, the node and its log
    named, and neither it nor the sites waiting for it are left running."""
    # Prepare
    prepared = flctl(workspace, "poc", "prepare", "-n", "2", "--json")
    assert prepared.returncode == 0, prepared.stderr
    port = json.loads((workspace / "poc.json").read_text())["port"]
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        # Execute
        started = flctl(workspace, "poc", "start")
    status = json.loads(flctl(workspace, "poc", "status", "--json").stdout)
    # Assert
    assert started.returncode == 1, started.stderr
    assert "localhost exited" in started.stderr
    assert "localhost.log" in started.stderr
    assert not any(n["alive"] for n in status["nodes"])
    assert list((workspace / "run").glob("*.pid")) == []


def test_a_local_federation_s_sites_prefer_isolation_and_its_server_keeps_the_defaults(tmp_path: Path) -> None:
    """poc sites run jobs confined where the machine can and unconfined (warned) where it cannot; production
    kits keep `required`."""
    from flctl.cloud.local import prepare
    from flctl.node.config.resources import load_resources

    state = prepare(tmp_path / "poc", sites=2)
    prod = tmp_path / "poc" / state.prod_dir
    for site in state.sites:
        assert load_resources(prod / site / "local" / "resources.yml").job_isolation == "preferred"
    server = next(p for p in prod.iterdir() if p.is_dir() and (p / "startup" / "server.crt").exists())
    assert load_resources(server / "local" / "resources.yml").job_isolation == "required"
