"""`flctl play` end to end against real sshd processes on 127.0.0.1: a server and two sites, each on a host of its own.

In order, on one fleet: a play from nothing is killed with SIGKILL in the middle of delivery, and a second run ends
with every participant verified by a finished hello-numpy and nothing duplicated; a third run does nothing and says
so, as does --check; an edit of one site's org re-issues only its certificate and restarts only that site; a host
that cannot be reached fails alone with one sentence (exit 3).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flctl.cloud.health import sites_online
from tests.federation import ADMIN, free_port, project_text
from tests.sshd import SshHost, make_key, start_hosts
from tests.test_deploy_ssh import FLCTL, HOST_PYTHON, flctl, processes_under

PARTICIPANTS = ["localhost", "site-1", "site-2"]


@dataclass
class Play:
    root: Path
    hosts: list[SshHost]
    playbook: Path
    project: Path
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.root / "play.play"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return flctl("play", self.playbook, *args, env=self.env, timeout=400)

    def journal(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in (self.state / "events.jsonl").read_text().splitlines()]

    def node_pid(self, i: int) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.hosts[i].root / "opt" / "run" / "node.pid").read_text())
        return None

    def releases(self, i: int) -> list[str]:
        return sorted(p.name for p in (self.hosts[i].root / "opt" / "releases").iterdir())

    def running(self, i: int, needle: str) -> int:
        """How many live processes of host `i` have `needle` in their command line."""
        count = 0
        for pid in processes_under(self.hosts[i].root / "opt"):
            with contextlib.suppress(OSError):
                count += needle in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        return count

    def logs(self) -> str:
        return "".join(f"\n--- {log}\n{log.read_text(errors='replace')[-2000:]}"
                       for log in sorted(self.root.glob("host-*/**/logs/supervisor.log")))


def playbook_text(hosts: list[SshHost], key: Path, known: Path, venvs: Path) -> str:
    lines = [f"api_version: 1\nproject: project.yml\nparallel: 3\ninventory:\n  known_hosts: {known}\n"
             "  health_timeout_s: 60\n  hosts:\n"]
    for host, name in zip(hosts, PARTICIPANTS, strict=True):
        lines.append(f"    - participant: {name}\n      address: 127.0.0.1\n      port: {host.port}\n"
                     f"      user: root\n      key_file: {key}\n      python: {HOST_PYTHON}\n"
                     f"      install_dir: {host.root / 'opt'}\n      venv_root: {venvs}\n      min_free_mb: 50\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def play(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, host_venvs: Path) -> Iterator[Play]:
    root = tmp_path_factory.mktemp("play")
    key = make_key(root / "id_ed25519")
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    hosts = start_hosts(root, 3, root / "authorized_keys")
    known = root / "known_hosts"
    known.write_text("".join(h.known_hosts_line() for h in hosts))
    project = root / "project.yml"
    project.write_text(project_text("playtest", free_port(), sites=2))
    playbook = root / "play.yml"
    playbook.write_text(playbook_text(hosts, key, known, host_venvs))
    tmp = root / "tmp"
    tmp.mkdir()
    fixture = Play(root, hosts, playbook, project, {"FLCTL_WHEEL_CACHE": str(wheel_cache), "TMPDIR": str(tmp)})
    try:
        yield fixture
    finally:
        if (fixture.state / "inventory.yml").exists():
            flctl("deploy", "stop", fixture.state / "inventory.yml", env=fixture.env)
        for pid in processes_under(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for host in hosts:
            host.stop()


def test_a_play_killed_during_delivery_resumes_to_verified_with_nothing_duplicated(play: Play) -> None:
    """SIGKILL of `flctl play` once a host's kit is delivered; the next run ends with every participant verified
    by a finished smoke job, one release and one node per host, the smoke job submitted once."""
    # Prepare: a run from nothing, killed when the journal records its first delivery
    proc = subprocess.Popen([FLCTL, "play", str(play.playbook)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **play.env})
    journal = play.state / "events.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and '"delivered"' in journal.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "flctl play ended before delivering anything"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = [e["kind"] for e in play.journal()]
    # Execute
    out = play.run("--json")
    # Assert
    assert "delivered" in killed_at and "verified" not in killed_at
    assert out.returncode == 0, out.stdout + out.stderr + play.logs()
    result = json.loads(out.stdout)
    assert [(r["participant"], r["state"], r["reason"]) for r in result["participants"]] == [
        (name, "verified", "") for name in PARTICIPANTS]
    assert [j["status"] for j in result["jobs"]] == ["FINISHED"]
    assert not result["provisioned"], "the project was provisioned by the killed run already"
    events = play.journal()
    assert [e["kind"] for e in events].count("job_submitted") == 1
    for i in range(3):
        # One release per host, unless this checkout's flctl changed between the two runs (other work in the same
        # tree): a new flctl wheel is a new release. Never a half-uploaded one left behind.
        assert 1 <= len(play.releases(i)) <= 2 and not any(r.endswith(".part") for r in play.releases(i))
        assert play.node_pid(i) is not None
        assert (play.running(i, "supervise.sh"), play.running(i, " node start ")) == (1, 1)
    for name in PARTICIPANTS:
        assert [e["kind"] for e in events if e.get("participant") == name][-1] == "verified"


def test_a_second_run_with_nothing_changed_does_nothing_and_says_so(play: Play) -> None:
    # Prepare
    before = (play.state / "events.jsonl").read_text()
    pids = [play.node_pid(i) for i in range(3)]
    # Execute
    out = play.run()
    as_json = play.run("--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing to do" in out.stderr
    assert json.loads(as_json.stdout)["nothing_to_do"] is True
    assert (play.state / "events.jsonl").read_text() == before
    assert [play.node_pid(i) for i in range(3)] == pids


def test_check_prints_an_empty_plan_and_changes_nothing(play: Play) -> None:
    # Prepare
    before = (play.state / "events.jsonl").read_text()
    prods = sorted((play.state / "workspace" / "playtest").glob("prod_*"))
    # Execute
    out = play.run("--check", "--json")
    # Assert
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan == {"provision": False, "jobs": [], "hosts": [
        {"participant": name, "host": "127.0.0.1", "certificate": "", "actions": [], "reason": "", "connection": False}
        for name in PARTICIPANTS]}
    assert (play.state / "events.jsonl").read_text() == before
    assert sorted((play.state / "workspace" / "playtest").glob("prod_*")) == prods


def test_a_node_gone_from_its_host_is_found_lost_and_started_again(play: Play) -> None:
    """site-1's node and its supervisor killed on its host: the next run records it lost, starts it again without
    uploading anything, and verifies the federation again; the other nodes keep running."""
    # Prepare
    for pid in processes_under(play.hosts[1].root / "opt"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30  # until the server's heartbeat timeout (3 s) lists it offline
    while time.monotonic() < deadline and "site-1" in (sites_online(play.state / "kits" / ADMIN[0]) or {}):
        time.sleep(0.2)
    pids = [play.node_pid(i) for i in (0, 2)]
    releases = play.releases(1)
    seen = len(play.journal())
    # Execute
    out = play.run("--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr + play.logs()
    added = [(e["kind"], e.get("participant")) for e in play.journal()[seen:]]
    assert ("lost", "site-1") in added and ("started", "site-1") in added and ("verified", "site-1") in added
    assert ("delivered", "site-1") not in added and ("lost", "site-2") not in added
    assert [play.node_pid(i) for i in (0, 2)] == pids and play.releases(1) == releases
    assert play.running(1, "supervise.sh") == 1


def test_an_org_edit_reissues_one_certificate_and_restarts_one_site(play: Play) -> None:
    """site-2's org changes: --check plans its certificate and its restart only; the run re-issues that one
    certificate, restarts only site-2 (the others keep their node process) and verifies again."""
    # Prepare
    play.project.write_text(play.project.read_text().replace("{name: site-2, org: org_2}",
                                                             "{name: site-2, org: org_9}"))
    pids = [play.node_pid(i) for i in range(3)]
    releases = [play.releases(i) for i in range(3)]
    # Execute
    check = play.run("--check", "--json")
    out = play.run("--json")
    # Assert
    assert check.returncode == 0, check.stderr
    plan = {h["participant"]: h for h in json.loads(check.stdout)["hosts"]}
    assert json.loads(check.stdout)["provision"] is True
    assert plan["site-2"]["certificate"] == "reissued (org changed from org_2 to org_9)"
    assert any("stop the running node" in a for a in plan["site-2"]["actions"])
    assert (plan["localhost"]["certificate"], plan["localhost"]["actions"]) == ("kept", [])
    assert (plan["site-1"]["certificate"], plan["site-1"]["actions"]) == ("kept", [])
    assert out.returncode == 0, out.stdout + out.stderr + play.logs()
    rows = {r["participant"]: r for r in json.loads(out.stdout)["participants"]}
    assert {n: (r["state"], r["certificate"]) for n, r in rows.items()} == {
        "localhost": ("verified", "kept"), "site-1": ("verified", "kept"), "site-2": ("verified", "reissued")}
    after = [play.node_pid(i) for i in range(3)]
    assert after[:2] == pids[:2] and after[2] != pids[2]
    assert [play.releases(i) for i in range(2)] == releases[:2]
    assert len(play.releases(2)) == len(releases[2]) + 1


def test_a_host_that_cannot_be_reached_fails_alone_and_says_where_it_stopped(play: Play) -> None:
    """site-1 moved to a port nothing listens on: --check cannot plan it (exit 3), the run fails it with one
    sentence at provisioned (exit 3, only a connection failed); the others stay verified."""
    # Prepare
    text = play.playbook.read_text()
    port = free_port()
    play.playbook.write_text(text.replace(f"port: {play.hosts[1].port}", f"port: {port}"))
    # Execute
    check = play.run("--check", "--json")
    out = play.run("--json")
    # Assert
    assert check.returncode == 3, check.stdout + check.stderr
    planned = {h["participant"]: h for h in json.loads(check.stdout)["hosts"]}
    assert f"cannot reach [127.0.0.1]:{port}" in planned["site-1"]["reason"] and planned["site-1"]["connection"]
    assert planned["site-2"]["actions"] == planned["localhost"]["actions"] == []
    assert out.returncode == 3, out.stdout + out.stderr
    rows = {r["participant"]: r for r in json.loads(out.stdout)["participants"]}
    assert rows["localhost"]["state"] == rows["site-2"]["state"] == "verified"
    assert rows["site-1"]["state"] == "provisioned"
    assert f"cannot reach [127.0.0.1]:{port}" in rows["site-1"]["reason"] and "\n" not in rows["site-1"]["reason"]
    play.playbook.write_text(text)


def test_the_state_folder_s_kits_removed_by_hand_are_made_again_and_nothing_restarts(play: Play) -> None:
    """Without STATE/kits the run cannot ask the server: it provisions again (every certificate kept), finds every
    host already running those very kits (the site moved back included), restarts none of them, and verifies."""
    # Prepare: the previous test left site-1 failed at provisioned, its playbook entry restored
    shutil.rmtree(play.state / "kits")
    pids = [play.node_pid(i) for i in range(3)]
    # Execute
    out = play.run("--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr + play.logs()
    result = json.loads(out.stdout)
    assert result["provisioned"] is True
    assert {(r["participant"], r["state"], r["certificate"]) for r in result["participants"]} == {
        (name, "verified", "kept") for name in PARTICIPANTS}
    assert [play.node_pid(i) for i in range(3)] == pids


def test_a_participant_removed_from_the_playbook_is_stopped_reported_and_forgotten(play: Play) -> None:
    """site-2's host taken out of the playbook: --check says its node would be stopped; the run stops that node (no
    process of it left on its host), reports it, records it removed, and leaves the others' nodes running."""
    # Prepare
    text = play.playbook.read_text()
    play.playbook.write_text(text.split("    - participant: site-2\n")[0])
    pids = [play.node_pid(i) for i in (0, 1)]
    assert play.running(2, " node start ") == 1
    # Execute
    check = play.run("--check", "--json")
    out = play.run("--json")
    # Assert
    assert check.returncode == 0, check.stdout + check.stderr
    planned = {h["participant"]: h for h in json.loads(check.stdout)["hosts"]}
    assert planned["site-2"]["actions"] == ["stop its node and forget it (no longer in the playbook)"]
    assert out.returncode == 0, out.stdout + out.stderr + play.logs()
    result = json.loads(out.stdout)
    assert result["removed"] == [{"participant": "site-2", "host": "127.0.0.1", "node": "stopped"}]
    assert [(r["participant"], r["state"]) for r in result["participants"]] == [
        ("localhost", "verified"), ("site-1", "verified")]
    assert (play.running(2, " node start "), play.running(2, "supervise.sh")) == (0, 0)
    assert [play.node_pid(i) for i in (0, 1)] == pids
    last = play.journal()[-1]
    assert (last["kind"], last["participant"], last["data"]["node"]) == ("removed", "site-2", "stopped")
    assert "site-2" not in (play.state / "inventory.yml").read_text()
    play.playbook.write_text(text)


def test_ctrl_c_during_a_play_stops_it_recording_where_and_the_next_run_goes_on(play: Play) -> None:
    """site-2 back in the playbook; SIGINT once the run provisioned it: flctl play exits 130 saying how to go on,
    its last journal event records the interruption and its phase, the state folder is free; the next run brings
    site-2 to verified with one node on its host."""
    # Prepare
    seen = len(play.journal())
    proc = subprocess.Popen([FLCTL, "play", str(play.playbook)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **play.env})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(e["kind"] == "provisioned" and e.get("participant") == "site-2" for e in play.journal()[seen:]):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "flctl play ended before provisioning site-2"
    # Execute
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    interrupted = play.journal()[-1]
    out = play.run("--json")
    # Assert
    assert proc.returncode == 130, err
    assert "interrupted" in err and "again to go on from there" in err
    assert interrupted["kind"] == "interrupted" and interrupted["data"]["phase"], interrupted
    assert out.returncode == 0, out.stdout + out.stderr + play.logs()
    result = json.loads(out.stdout)
    assert [(r["participant"], r["state"]) for r in result["participants"]] == [
        (name, "verified") for name in PARTICIPANTS]
    assert (play.running(2, "supervise.sh"), play.running(2, " node start ")) == (1, 1)
