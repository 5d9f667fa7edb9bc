"""Every command takes --json: the whole command tree is walked, and the commands that gained it are run."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import LOCAL_PROJECT
from .federation import FLCTL, Federation, _kill_group, make_federation

# Commands where JSON output makes no sense, and why.
NO_JSON = {
    ("console",): "it opens the full-screen live console; there is no output to print as JSON",
}


def leaf_commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, click command) of every leaf command, every lazy group built from app.py's table."""
    import typer.main

    from flctl.console.cli.app import app

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        children = getattr(command, "commands", None)
        if children is None:
            yield path, command
            return
        for name in list(children):
            yield from walk(children[name], (*path, name))

    yield from walk(typer.main.get_command(app), ())


def test_every_command_takes_json():
    """Each leaf command of the tree has a --json option, but for the allow-listed ones (with their reason)."""
    leaves = dict(leaf_commands())
    missing = [" ".join(path) for path, command in leaves.items()
               if path not in NO_JSON and not any("--json" in getattr(p, "opts", ()) for p in command.params)]

    assert len(leaves) > 30  # the walk reached into every group
    assert set(NO_JSON) <= set(leaves), "an allow-listed command no longer exists"
    assert missing == []


def test_kit_complete_json(flctl, tmp_path):
    """`kit complete --json` prints the verification of the completed kit: ok, kind, participant, problems."""
    req = flctl("kit", "request", "site-1", "--org", "local", "-o", tmp_path / "site", "--json")
    signed = flctl("provision", "sign", req.json()["csr"], "-p", LOCAL_PROJECT, "-w", tmp_path / "ws", "--json")

    done = flctl("kit", "complete", signed.json()["kit"], "--key", req.json()["key"], "--json")

    assert done.code == 0, done.stderr
    assert done.json() | {"kit": None} == {"kit": None, "participant": "site-1", "kind": "site", "ok": True,
                                           "problems": []}
    assert done.stderr == ""


def test_poc_clean_json(tmp_path):
    """`poc clean --json` prints the folder it removed."""
    env = {**{k: v for k, v in os.environ.items() if k != "FLCTL_KIT"}, "FLCTL_POC_WORKSPACE": str(tmp_path / "poc")}
    prepared = subprocess.run([FLCTL, "poc", "prepare", "-n", "1", "--json"], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
    assert prepared.returncode == 0, prepared.stderr

    cleaned = subprocess.run([FLCTL, "poc", "clean", "--json"], capture_output=True, text=True, env=env, timeout=120,
                             check=False)

    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout) == {"removed": str(tmp_path / "poc")}
    assert not (tmp_path / "poc").exists()


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, sites=1)


def _start(kit: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([FLCTL, "node", "start", str(kit), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def test_node_start_and_stop_json(federation):
    """`node start --json` streams JSON lines (listening / connecting, then stopped); `node stop --json` answers
    with the process it stopped."""
    server = _start(federation.kit("localhost"))
    site = None
    try:
        assert server.stdout is not None
        listening = json.loads(server.stdout.readline())
        site = _start(federation.kit("site-1"))
        assert site.stdout is not None
        connecting = json.loads(site.stdout.readline())
        stop_site = subprocess.run([FLCTL, "node", "stop", str(federation.kit("site-1")), "--json"],
                                   capture_output=True, text=True, timeout=60, check=False)
        stop_server = subprocess.run([FLCTL, "node", "stop", str(federation.kit("localhost")), "--json"],
                                     capture_output=True, text=True, timeout=60, check=False)
        server_rest, _ = server.communicate(timeout=30)
        site_rest, _ = site.communicate(timeout=30)
    finally:
        for proc in (server, site):
            if proc is not None:
                _kill_group(proc.pid)
                proc.wait(10)

    assert listening == {"event": "listening", "kind": "server", "name": "localhost", "project": "fedtest",
                         "address": listening["address"]}
    assert listening["address"].endswith(f":{federation.port}")
    assert connecting == {"event": "connecting", "kind": "site", "name": "site-1", "project": "fedtest",
                          "target": f"localhost:{federation.port}"}
    assert stop_site.returncode == 0, stop_site.stderr
    assert json.loads(stop_site.stdout) == {"stopped": True, "pid": site.pid}
    assert json.loads(stop_server.stdout) == {"stopped": True, "pid": server.pid}
    assert [json.loads(line) for line in server_rest.splitlines()] == [
        {"event": "stopped", "kind": "server", "name": "localhost"}]
    assert [json.loads(line) for line in site_rest.splitlines()] == [
        {"event": "stopped", "kind": "site", "name": "site-1"}]


def test_quickstart_json_prints_one_line_per_step(tmp_path):
    """`quickstart --json` prints one JSON object a line, one per step, and nothing else on stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("FLCTL_KIT", "FLCTL_POC_WORKSPACE")}
    proc = subprocess.Popen([FLCTL, "quickstart", "--job", "hello-numpy", "--json"], cwd=tmp_path, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        _kill_group(proc.pid)

    assert proc.returncode == 0, err
    steps = [json.loads(line) for line in out.splitlines()]
    assert [s["step"] for s in steps] == ["up", "submitted", "ended", "downloaded", "stopped"]
    assert steps[2]["status"] == "FINISHED"
    assert Path(steps[3]["path"]).is_dir() and steps[3]["id"] == steps[1]["id"]
    assert steps[4]["kept"] is None
