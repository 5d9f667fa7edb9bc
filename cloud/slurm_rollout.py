"""Roll a project out to a Slurm cluster's shared file system over SSH: its kits and its batch scripts in one folder.

`flctl deploy slurm rollout PROJECT_WORKSPACE --to USER@LOGIN:/shared/flctl` connects to the cluster's login node
(flctl.cloud.ssh_connector: host keys checked against known_hosts, a key file or the agent) and writes

    /shared/flctl/kits/<kit>/startup/...   every site's kit (and the server's with --server), keys mode 0600,
                                           each kit's folder 0700; never an admin's kit
    /shared/flctl/kits/<kit>/local/...     written only where missing: the site owns local/ once it is there
    /shared/flctl/slurm/                   the batch scripts, submit.sh and slurm.json, reading the kits above

then checks every kit there with the cluster's own flctl (`--flctl`, the one the batch nodes run: `flctl kit
verify`), so a kit damaged in transit or a wrong flctl path is found before any job starts, and with `submit`
runs `flctl deploy slurm submit` on the login node. What to write is pure (`files`); `rollout` does the I/O.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from flctl.cloud.connector import Connector
from flctl.cloud.deploy_errors import DeployError, DeployInputError, HostUnsuitable, KitRejected
from flctl.cloud.project_kits import ProjectKits
from flctl.cloud.slurm_scripts import SlurmOptions, scripts

_TARGET = re.compile(r"(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]*)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):"
                     r"(?P<path>/.*)")
KEY_MODE, FILE_MODE, SCRIPT_MODE = 0o600, 0o644, 0o755


@dataclass(frozen=True)
class SharedFolder:
    """`[USER@]HOST:/absolute/path`: the login node and the folder on the shared file system."""

    user: str | None
    host: str
    path: PurePosixPath

    @classmethod
    def parse(cls, text: str) -> SharedFolder:
        match = _TARGET.fullmatch(text)
        if not match or ".." in PurePosixPath(match["path"]).parts or "'" in match["path"]:
            raise DeployInputError(f"[--to] '{text}' is not [USER@]HOST:/absolute/path (the cluster's login node "
                                   "and a folder of its shared file system)")
        return cls(match["user"], match["host"].strip("[]"), PurePosixPath(match["path"]))

    @property
    def kits(self) -> PurePosixPath:
        return self.path / "kits"

    @property
    def slurm(self) -> PurePosixPath:
        return self.path / "slurm"


@dataclass(frozen=True)
class RemoteFile:
    data: bytes
    mode: int
    site_owned: bool = False  # local/: written only where missing


def files(kits: ProjectKits, options: SlurmOptions, shared: SharedFolder) -> dict[PurePosixPath, RemoteFile]:
    """Every file the rollout writes, by its path on the cluster."""
    out: dict[PurePosixPath, RemoteFile] = {}
    for node in kits.nodes if options.server else kits.sites:
        for rel, data in node.files.items():
            secret = rel.endswith(".key")
            mode = KEY_MODE if secret else SCRIPT_MODE if rel.endswith(".sh") else FILE_MODE
            out[shared.kits / node.path.name / rel] = RemoteFile(data, mode, rel.startswith("local/"))
    for name, text in scripts(kits, options, shared.slurm / "logs", shared.kits).items():
        out[shared.slurm / name] = RemoteFile(text.encode(), SCRIPT_MODE if name.endswith((".sh", ".sbatch"))
                                              else FILE_MODE)
    return out


@dataclass(frozen=True)
class RolloutResult:
    shared: SharedFolder
    written: list[str]
    kept: list[str]  # site-owned files already there
    kits: list[str]  # the kits verified there
    jobs: list[dict[str, Any]]  # `flctl deploy slurm submit --json` on the login node, when asked


def rollout(kits: ProjectKits, options: SlurmOptions, shared: SharedFolder, connector: Connector,
            submit: bool = False) -> RolloutResult:
    """Write `files` through `connector` (connected), verify each kit there with `options.flctl`, then submit."""
    planned = files(kits, options, shared)
    folders = sorted({str(p.parent) for p in planned})
    kit_dirs = sorted({str(shared.kits / node.path.name) for node in (kits.nodes if options.server else kits.sites)})
    private = " ".join(map(shlex.quote, [str(shared.kits), *kit_dirs]))
    connector.check(f"mkdir -p {private} {' '.join(map(shlex.quote, folders))} && chmod 700 {private}",
                    f"making {shared.path}")
    owned = [p for p, f in planned.items() if f.site_owned]
    present = set(connector.check("for f in " + " ".join(shlex.quote(str(p)) for p in owned)
                                  + '; do [ -e "$f" ] && echo "$f"; done; true', "listing local/ files").split())
    written, kept = [], []
    for path, remote in planned.items():
        if remote.site_owned and str(path) in present:
            kept.append(str(path))
            continue
        connector.put_file(remote.data, str(path), remote.mode)
        written.append(str(path))
    flctl = shlex.quote(options.flctl)
    for kit in kit_dirs:
        result = connector.run(f"{flctl} kit verify {shlex.quote(kit)}")
        if result.exit_code == 127:
            raise HostUnsuitable(f"{options.flctl} is not there on {connector.name}: give --flctl the flctl the "
                                 "batch nodes run (e.g. a venv on the shared file system)")
        if result.exit_code != 0:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise KitRejected(f"the kit {kit} does not verify on {connector.name}: "
                              f"{lines[-1] if lines else result.exit_code}; roll out again")
    jobs: list[dict[str, Any]] = []
    if submit:
        out = connector.check(f"{flctl} deploy slurm submit {shlex.quote(str(shared.slurm))} --json",
                              "submitting the jobs")
        try:
            jobs = json.loads(out)
        except ValueError:
            raise DeployError(f"flctl deploy slurm submit on {connector.name} printed no JSON: {out[-200:]}") from None
    return RolloutResult(shared, written, kept, kit_dirs, jobs)
