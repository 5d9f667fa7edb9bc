"""Planning a local federation (pure: no processes, no files): its project, its folder layout, its commands.

A local federation is one project on 127.0.0.1: a server `localhost`, sites `site-1..N` and one
admin `admin@localhost` (project_admin), provisioned into a workspace folder:

    WORKSPACE/
      poc.json                    what was prepared: project, port, sites, where the kits are
      project.yml                 the project it was provisioned from
      kits/<project>/prod_NN/     the startup kits (flctl.provisioner.build.provision)
      run/<participant>.pid       PID and start time of each running node
      logs/<participant>.log      each node's output
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT = "poc"
SERVER = "localhost"
ADMIN = "admin@localhost"
STATE_FILE = "poc.json"


def default_workspace() -> Path:
    """$FLCTL_POC_WORKSPACE, else the last prepared federation's folder (`local_context`), else
    <data folder>/flctl/poc ($XDG_DATA_HOME, else ~/.local/share)."""
    from flctl.cloud.local_context import remembered

    env = os.environ.get("FLCTL_POC_WORKSPACE")
    if env:
        return Path(env).expanduser()
    last = remembered()
    if last is not None:
        return last
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "flctl" / "poc"


def site_names(count: int) -> list[str]:
    return [f"site-{i}" for i in range(1, count + 1)]


def project_yaml(sites: list[str], port: int) -> str:
    """The project.yml of a local federation listening on 127.0.0.1:`port`."""
    site_lines = "".join(f"  - {{name: {site}, org: {site}}}\n" for site in sites)
    return (f"api_version: 1\nname: {PROJECT}\n"
            f"server: {{name: {SERVER}, org: local, port: {port}, hosts: [127.0.0.1]}}\n"
            f"sites:\n{site_lines}"
            f"admins:\n  - {{name: {ADMIN}, org: local, role: project_admin}}\n"
            "heartbeat: {interval_s: 0.5, timeout_s: 3}\n"
            + ("homomorphic_encryption: {}\n" if _has_tenseal() else ""))


def _has_tenseal() -> bool:
    """Whether the privacy extra is installed: a local federation then gets a CKKS context, for jobs with
    `encryption: he` (its contexts take about 0.03 s to make)."""
    import importlib.util

    return importlib.util.find_spec("tenseal") is not None


@dataclass(frozen=True)
class PocState:
    """What `poc prepare` made (poc.json)."""

    project: str
    port: int
    sites: list[str]
    prod_dir: str  # relative to the workspace

    def kit(self, workspace: Path, participant: str) -> Path:
        return workspace / self.prod_dir / participant

    def admin_kit(self, workspace: Path) -> Path:
        return self.kit(workspace, ADMIN)

    def nodes(self) -> list[str]:
        """Participants that run as processes, in start order: the server first."""
        return [SERVER, *self.sites]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PocState:
        data = json.loads(text)
        return cls(str(data["project"]), int(data["port"]), [str(s) for s in data["sites"]], str(data["prod_dir"]))


def read_state(workspace: Path) -> PocState | None:
    """The prepared federation in `workspace`, or None when there is none (or its poc.json is unreadable)."""
    try:
        return PocState.from_json((workspace / STATE_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_file(workspace: Path, participant: str) -> Path:
    return workspace / "run" / f"{participant}.pid"


def log_file(workspace: Path, participant: str) -> Path:
    return workspace / "logs" / f"{participant}.log"


def node_command(kit: Path) -> list[str]:
    """How a node is started: the flctl beside this interpreter, else `python -m flctl.console.cli.app`."""
    flctl = Path(sys.executable).parent / "flctl"
    if flctl.is_file() and os.access(flctl, os.X_OK):
        return [str(flctl), "node", "start", str(kit)]
    return [sys.executable, "-m", "flctl.console.cli.app", "node", "start", str(kit)]


def admin_kit(workspace: Path) -> Path | None:
    """The local federation's admin kit when one is prepared in `workspace`."""
    state = read_state(workspace)
    return None if state is None else state.admin_kit(workspace)
