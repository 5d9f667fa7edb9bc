"""A real local federation for tests: provisioned kits, a server and sites as real `flctl node start` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml

FLCTL = str(Path(sys.executable).parent / "flctl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ADMIN = ("admin@hub.org", "hub", "project_admin")


def project_text(name: str, port: int, sites: int, admins: list[tuple[str, str, str]] | None = None,
                 heartbeat_timeout_s: float = 3) -> str:
    site_lines = "".join(f"  - {{name: site-{i}, org: org_{i}}}\n" for i in range(1, sites + 1))
    admin_lines = "".join(f"  - {{name: {a}, org: {o}, role: {r}}}\n" for a, o, r in (admins or [ADMIN]))
    return (f"api_version: 1\nname: {name}\nserver: {{name: localhost, org: hub, port: {port}, hosts: [127.0.0.1]}}\n"
            f"sites:\n{site_lines}admins:\n{admin_lines}"
            f"heartbeat: {{interval_s: 0.5, timeout_s: {heartbeat_timeout_s:g}}}\n")


@dataclass
class Federation:
    root: Path
    prod: Path
    port: int
    sites: list[str]
    admin: str = ADMIN[0]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def admin_kit(self) -> Path:
        return self.prod / self.admin

    def kit(self, name: str) -> Path:
        return self.prod / name

    def start(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a node the way an operator does: the kit's own start.sh (which runs `flctl node start`)."""
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed when the process is stopped
        # Temporary folders (a job's script socket) go under this federation's root, not /tmp: a job process the
        # test kills with SIGKILL cannot remove its own.
        tmp = self.root / "tmp"
        tmp.mkdir(exist_ok=True)
        proc = subprocess.Popen(["bash", str(self.kit(name) / "startup" / "start.sh")], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "FLCTL": FLCTL, "TMPDIR": str(tmp), **(env or {})})
        self.processes[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        # Processes the node started (job processes, training scripts) run in sessions of their own:
        # note them before stopping the node, since orphans lose their parent link.
        groups = _descendant_groups(proc.pid)
        if proc.poll() is None:
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        for pgid in groups | _descendant_groups(proc.pid):
            _kill_group(pgid)
        _kill_group(proc.pid)
        proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def flctl(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLCTL_KIT": str(self.admin_kit)}
        return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)

    def flctl_json(self, *args: str | Path) -> Any:
        out = self.flctl(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def wait_online(self, sites: list[str], timeout: float = 30) -> None:
        """Until the server lists every one of `sites` online. Asked from this process (a `flctl` process a poll
        would spend CPU the starting nodes need), through a fresh channel each time (a channel refused while the
        server starts would wait out gRPC's reconnect backoff)."""
        from flctl.node.admin.admin_client import AdminClient
        from flctl.node.errors import NodeError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(NodeError):
                with AdminClient.from_kit(self.admin_kit, timeout_s=10) as admin:
                    online = {s.name for s in admin.list_sites() if s.online}
                if set(sites) <= online:
                    return
            time.sleep(0.3)
        raise AssertionError(f"sites {sites} did not come online; logs: " + self.logs())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.root.glob("*.log"))


def _descendant_groups(pid: int) -> set[int]:
    """Process groups of every live descendant of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    groups: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        groups[int(entry.name)] = int(fields[2])
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(groups[child])
            todo.append(child)
    return out


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def make_federation(root: Path, sites: int = 2, name: str = "fedtest",
                    admins: list[tuple[str, str, str]] | None = None, heartbeat_timeout_s: float = 3) -> Federation:
    """Provision a project on a free port; the first admin is the one `flctl` calls act as."""
    port = free_port()
    text = project_text(name, port, sites, admins, heartbeat_timeout_s)
    (root / "project.yml").write_text(text)
    result = provision(project_from_document(parse_yaml(text, "project.yml")).project, root / "ws")
    return Federation(root, result.prod_dir, port, [f"site-{i}" for i in range(1, sites + 1)],
                      (admins or [ADMIN])[0][0])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def running(federation: Federation, sites: list[str] | None = None) -> Iterator[Federation]:
    """Start the server and `sites` (default: all), wait until they are online, and stop everything after."""
    try:
        federation.start("localhost")
        for site in federation.sites if sites is None else sites:
            federation.start(site)
        federation.wait_online(federation.sites if sites is None else sites)
        yield federation
    finally:
        federation.stop_all()


def events_until_round(admin: Any, job_id: str, round_no: int) -> list[Any]:
    """Watch a job's events (through an `AdminClient`) until round `round_no` completes; the events seen."""
    seen = []
    for event in admin.watch(job_id):
        seen.append(event)
        if event.kind == "round" and event.data["round"] == round_no:
            break
    return seen
