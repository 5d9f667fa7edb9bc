"""`flctl deploy` against real sshd processes on 127.0.0.1, one per simulated host, each with its own install root.

The main flow rolls a server and two sites out to three hosts, runs hello-numpy through them,
rolls out again (no changes) and stops everything (no process left). The hosts share one venv
folder (inventory `venv_root`), so the offline install of the wheels runs once per session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flctl.cloud.connector import Connector
from flctl.cloud.deploy_executor import Rollout
from flctl.cloud.inventory import HostSpec, load_inventory
from flctl.cloud.ssh_connector import SshConnector, SshOptions
from tests.federation import Federation, make_federation
from tests.sshd import SshHost, free_port, make_key, start_hosts

FLCTL = str(Path(sys.executable).parent / "flctl")
# The interpreter the hosts make their venvs from: the one under this test's venv, as a host's own Python.
HOST_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
JOBS = Path(__file__).resolve().parent.parent / "playbooks" / "jobs"


def inventory_text(fed: Federation, hosts: list[SshHost], key: Path, known_hosts: Path, venvs: Path,
                   participants: list[str], install: str = "opt", health_timeout_s: float = 60) -> str:
    lines = [f"api_version: 1\nkits: {fed.prod}\nadmin_kit: {fed.admin}\nknown_hosts: {known_hosts}\n"
             f"health_timeout_s: {health_timeout_s}\nhosts:\n"]
    for host, name in zip(hosts, participants, strict=True):
        lines.append(f"  - participant: {name}\n    address: 127.0.0.1\n    port: {host.port}\n    user: root\n"
                     f"    key_file: {key}\n    python: {HOST_PYTHON}\n    install_dir: {host.root / install}\n"
                     f"    venv_root: {venvs}\n    min_free_mb: 50\n")
    return "".join(lines)


def flctl(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def processes_under(root: Path) -> list[int]:
    """PIDs of live processes whose command line mentions `root` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if str(root) in cmdline and state != "Z" and "sshd" not in cmdline:
                    found.append(int(entry.name))
    return found


@dataclass
class Fleet:
    root: Path
    fed: Federation
    hosts: list[SshHost]
    key: Path
    inventory: Path
    wheel_cache: Path
    venvs: Path

    def deploy(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return flctl("deploy", *args, env={"FLCTL_WHEEL_CACHE": str(self.wheel_cache)})

    def supervisor_logs(self) -> str:
        """Every host's supervisor log (each node's output, and each restart), for a failure's message."""
        return "".join(f"\n--- {log}\n{log.read_text(errors='replace')[-3000:]}"
                       for log in sorted(self.root.glob("host-*/**/logs/supervisor.log")))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, host_venvs: Path) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    fed = make_federation(root, sites=2)
    key = make_key(root / "id_ed25519")
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    hosts = start_hosts(root, 3, root / "authorized_keys")
    known = root / "known_hosts"
    known.write_text("".join(h.known_hosts_line() for h in hosts))
    inventory = root / "inventory.yml"
    inventory.write_text(inventory_text(fed, hosts, key, known, host_venvs, ["localhost", *fed.sites]))
    fleet = Fleet(root, fed, hosts, key, inventory, wheel_cache, host_venvs)
    try:
        yield fleet
    finally:
        fleet.deploy("stop", inventory)
        for pid in processes_under(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for host in hosts:
            host.stop()


def test_rollout_runs_a_federation_that_finishes_hello_numpy(fleet: Fleet) -> None:
    """A server and two sites rolled out to three hosts come up healthy and run hello-numpy to FINISHED."""
    # Execute
    out = fleet.deploy("ssh", fleet.inventory, "--parallel", "3", "--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout)
    assert [(r["participant"], r["status"]) for r in results] == [
        ("localhost", "deployed"), ("site-1", "deployed"), ("site-2", "deployed")]
    job = flctl("job", "submit", JOBS / "hello-numpy", "--watch", "--json", "--kit", fleet.fed.admin_kit,
                timeout=120)
    assert job.returncode == 0, job.stdout + job.stderr
    assert json.loads(job.stdout)["status"] == "FINISHED"


def test_second_rollout_changes_nothing(fleet: Fleet) -> None:
    """Rolling out the same kits again uploads nothing, restarts nothing and says so; so does --dry-run."""
    # Execute
    dry = fleet.deploy("ssh", fleet.inventory, "--dry-run", "--json")
    again = fleet.deploy("ssh", fleet.inventory)
    # Assert
    assert dry.returncode == 0, dry.stderr
    assert {r["status"] for r in json.loads(dry.stdout)} == {"unchanged"}, dry.stdout + fleet.supervisor_logs()
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stderr


def test_status_and_logs_show_the_running_nodes(fleet: Fleet) -> None:
    """`deploy status` lists every node running and healthy; `deploy logs` prints a site's node.log."""
    # Execute
    status = fleet.deploy("status", fleet.inventory, "--json")
    logs = fleet.deploy("logs", fleet.inventory, "site-1", "-n", "20")
    logs_json = fleet.deploy("logs", fleet.inventory, "site-1", "-n", "20", "--json")
    # Assert
    assert status.returncode == 0, status.stdout + status.stderr
    assert {(r["participant"], r["status"]) for r in json.loads(status.stdout)} == {
        ("localhost", "running"), ("site-1", "running"), ("site-2", "running")}
    assert logs.returncode == 0, logs.stderr
    assert "workspace/node.log" in logs.stdout
    assert logs_json.returncode == 0, logs_json.stderr
    as_json = json.loads(logs_json.stdout)
    assert (as_json["host"], as_json["lines"]) == ("site-1", 20) and "workspace/node.log" in as_json["log"]


def test_upgrade_rolls_back_a_host_unhealthy_after_it(fleet: Fleet) -> None:
    """An upgrade to a kit that cannot reach the server rolls that site back; its neighbour is left unchanged."""
    # Prepare: a prod folder where site-2's kit comes from another project (signed, but for a server nobody runs)
    (fleet.root / "other-project").mkdir()
    other = make_federation(fleet.root / "other-project", sites=2)
    prod = fleet.root / "upgrade-prod"
    shutil.copytree(fleet.fed.prod, prod, ignore=shutil.ignore_patterns("workspace"))
    shutil.rmtree(prod / "site-2")
    shutil.copytree(other.kit("site-2"), prod / "site-2")
    text = inventory_text(fleet.fed, fleet.hosts[1:], fleet.key, fleet.root / "known_hosts", fleet.venvs,
                          ["site-1", "site-2"], health_timeout_s=5)
    inventory = fleet.root / "upgrade.yml"
    inventory.write_text(text.replace(f"kits: {fleet.fed.prod}", f"kits: {prod}"))
    before = json.loads(fleet.deploy("status", fleet.inventory, "--json").stdout)
    # Execute
    out = fleet.deploy("upgrade", inventory, "--json", "--parallel", "2")
    # Assert
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("["), out.stderr
    by_name = {r["participant"]: r for r in json.loads(out.stdout)}
    assert by_name["site-1"]["status"] == "unchanged"
    assert by_name["site-2"]["status"] == "rolled back"
    assert "rolled back to release" in by_name["site-2"]["message"]
    after = json.loads(fleet.deploy("status", fleet.inventory, "--json").stdout)
    assert [(r["participant"], r["status"], r["release"]) for r in after] == \
        [(r["participant"], "running", r["release"]) for r in before]


class TamperingConnector(SshConnector):
    """Flips a byte of the site's certificate on its way to the host: a kit modified in transit."""

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        if remote_path.endswith("startup/site.crt"):
            data = data.replace(b"MII", b"MIJ", 1)
        super().put_file(data, remote_path, mode)


def test_kit_modified_in_transit_is_refused_on_the_host(fleet: Fleet) -> None:
    """The on-host signature check refuses a kit changed in transit: the host fails, nothing is started."""
    # Prepare
    inventory = fleet.root / "tamper.yml"
    inventory.write_text(inventory_text(fleet.fed, fleet.hosts[1:2], fleet.key, fleet.root / "known_hosts",
                                        fleet.venvs, ["site-1"], install="opt-tampered"))
    inv = load_inventory(inventory)

    def tampering(host: HostSpec) -> Connector:
        return TamperingConnector(SshOptions(host.address, host.port, host.user, inv.key_file(host),
                                             inv.known_hosts), name=host.participant)

    # Execute
    [result] = Rollout(inv, tampering, wheel_cache=fleet.wheel_cache).deploy()
    # Assert
    assert (result.status, result.reason) == ("failed", "kit rejected"), result.message
    assert "site.crt" in result.message
    install = fleet.hosts[1].root / "opt-tampered"
    assert not (install / "current").exists()
    assert not list((install / "releases").iterdir())


def test_stop_leaves_no_process_behind(fleet: Fleet) -> None:
    """`deploy stop` ends every node, its supervisor and its job processes: nothing under the hosts' roots runs."""
    # Execute
    out = fleet.deploy("stop", fleet.inventory, "--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    assert {r["status"] for r in json.loads(out.stdout)} == {"stopped"}
    assert processes_under(fleet.root) == []
    status = fleet.deploy("status", fleet.inventory, "--json")
    assert status.returncode == 1
    assert {r["status"] for r in json.loads(status.stdout)} == {"not running"}


def test_connection_failures_are_named_per_host_and_do_not_stop_the_others(fleet: Fleet) -> None:
    """Wrong key, unknown host key, changed host key and a closed port each fail their host only, exit 3."""
    # Prepare: four entries for the same federation's sites, each wrong in one way, plus a good one
    other_key = make_key(fleet.root / "id_other")
    known = fleet.root / "known_hosts_failures"
    h1, h2, h3 = fleet.hosts
    changed = make_key(fleet.root / "not_the_host_key")
    kind, blob = changed.with_suffix(".pub").read_text().split()[:2]
    known.write_text(h1.known_hosts_line() + h2.known_hosts_line() + f"[127.0.0.1]:{h3.port} {kind} {blob}\n")
    closed = free_port()
    entries = [("localhost", h1.port, other_key, "opt"), ("site-1", h2.port, fleet.key, "opt"),
               ("site-2", h3.port, fleet.key, "opt"), ("admin@hub.org", closed, fleet.key, "opt")]
    text = (f"api_version: 1\nkits: {fleet.fed.prod}\nknown_hosts: {known}\nhosts:\n" + "".join(
        f"  - {{participant: {p}, address: 127.0.0.1, port: {port}, user: root, key_file: {k}, "
        f"python: {HOST_PYTHON}, install_dir: {fleet.root / 'failures' / p}}}\n" for p, port, k, _ in entries))
    inventory = fleet.root / "failures.yml"
    inventory.write_text(text)
    # Execute
    out = fleet.deploy("status", inventory, "--json")
    # Assert
    assert out.returncode == 1  # site-1 connects and is reported "not installed": not only connection failures
    by_name = {r["participant"]: r for r in json.loads(out.stdout)}
    assert by_name["localhost"]["reason"] == "authentication failed"
    assert by_name["site-1"]["status"] == "not installed"
    assert by_name["site-2"]["reason"] == "host key changed"
    assert f"ssh-keygen -R '[127.0.0.1]:{h3.port}' -f {known}" in by_name["site-2"]["message"]
    assert by_name["admin@hub.org"]["reason"] == "unreachable"


def test_unknown_host_key_needs_the_flag(fleet: Fleet) -> None:
    """A host missing from known_hosts is refused (exit 3) until --accept-new-host-keys records its key."""
    # Prepare
    known = fleet.root / "known_hosts_empty"
    known.write_text("")
    inventory = fleet.root / "unknown.yml"
    inventory.write_text(inventory_text(fleet.fed, fleet.hosts[:1], fleet.key, known, fleet.venvs,
                                        ["localhost"], install="opt-unknown"))
    # Execute
    refused = fleet.deploy("status", inventory, "--json")
    accepted = fleet.deploy("ssh", inventory, "--dry-run", "--json", "--accept-new-host-keys")
    # Assert
    assert refused.returncode == 3
    [result] = json.loads(refused.stdout)
    assert result["reason"] == "unknown host key" and "--accept-new-host-keys" in result["message"]
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert json.loads(accepted.stdout)[0]["status"] == "planned"
    assert known.read_text().startswith(f"[127.0.0.1]:{fleet.hosts[0].port} ssh-ed25519 ")
    assert not (fleet.hosts[0].root / "opt-unknown").exists()  # a dry run touches nothing


def test_example_inventory_dry_run_works_as_its_comments_say(fleet: Fleet, tmp_path: Path) -> None:
    """playbooks/rollouts/inventory.yml, after the provision command its comment gives (run as written, from a
    copy of the repository's playbooks), dry-runs with exit 0 once its addresses are this test's sshd hosts; with
    hosts it cannot reach, every host is named and the exit is 3, as the comment says."""
    import yaml

    # Prepare: the playbooks as a fresh clone has them, and the provision command of the inventory's comment
    shutil.copytree(JOBS.parent, tmp_path / "playbooks")
    example = tmp_path / "playbooks" / "rollouts" / "inventory.yml"
    [command] = [line.split("flctl ", 1)[1] for line in example.read_text().splitlines()
                 if line.startswith("#") and " flctl provision playbooks/" in line]
    made = flctl(*command.split(), env={"FLCTL_CA_PASSPHRASE": "example-passphrase"}, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    spec = yaml.safe_load(example.read_text())
    known = tmp_path / "known_hosts"
    known.write_text("".join(h.known_hosts_line() for h in fleet.hosts))

    def rewritten(name: str, ports: list[int]) -> Path:
        hosts = [{**entry, "address": "127.0.0.1", "port": port, "user": "root", "key_file": str(fleet.key),
                  "python": HOST_PYTHON, "install_dir": str(tmp_path / "hosts" / entry["participant"]),
                  "venv_root": str(fleet.venvs), "sudo": False, "min_free_mb": 50}
                 for entry, port in zip(spec["hosts"], ports, strict=True)]
        path = example.with_name(name)  # beside the example: its relative `kits` path still holds
        path.write_text(yaml.safe_dump({**spec, "known_hosts": str(known), "hosts": hosts}))
        return path

    # Execute
    reachable = fleet.deploy("ssh", rewritten("here.yml", [h.port for h in fleet.hosts]), "--dry-run", "--json")
    unreachable = fleet.deploy("ssh", rewritten("nowhere.yml", [free_port() for _ in fleet.hosts]), "--dry-run",
                               "--json")
    # Assert
    assert reachable.returncode == 0, reachable.stdout + reachable.stderr
    assert {r["status"] for r in json.loads(reachable.stdout)} == {"planned"}
    assert unreachable.returncode == 3, unreachable.stdout + unreachable.stderr
    assert {r["reason"] for r in json.loads(unreachable.stdout)} == {"unreachable"}
    assert not (tmp_path / "hosts").exists()  # a dry run touches nothing
