"""The cloud deployment's state folder: what flctl created (so destroy removes exactly that), the machines'
addresses, their generated SSH keys and their pinned host keys.

```
<inventory>.deploy/
  state.json     deployment id, project, every resource created (recorded the moment it exists), machines
  keys/          <participant> and <participant>.pub: ed25519 keys flctl made (0600), never uploaded whole
  known_hosts    host keys of the machines, pinned at first contact
  .lock          flock: one deploy or destroy at a time
```
`state.json` is replaced atomically after every change, so a crash never leaves it half-written and
never forgets a resource that exists. No credential is ever written here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flctl.cloud.deploy_errors import DeployError
from flctl.provisioner.state import write_atomic

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Record:
    """One created resource: enough to find it again and delete it."""

    provider: str  # the deploy target that made it (flctl.cloud.targets)
    kind: str  # security_group, key_pair, instance, address; resource_group, virtual_network, ...
    id: str  # the cloud's id (AWS id, or Azure resource id)
    name: str
    participant: str
    location: str  # AWS region, or Azure subscription
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Machine:
    """A created machine as the SSH rollout reaches it."""

    participant: str
    provider: str
    address: str
    user: str
    key_file: str  # absolute path of the private key
    instance: str  # the instance id, or the VM's resource id


@dataclass
class DeploymentState:
    """The contents of state.json, and the folder it lives in."""

    folder: Path
    deployment: str
    project: str
    records: list[Record] = field(default_factory=list)
    machines: dict[str, Machine] = field(default_factory=dict)

    @property
    def keys(self) -> Path:
        return self.folder / "keys"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    # ---- reading and writing ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path) -> DeploymentState | None:
        """The state in `folder`, or None when nothing was ever deployed from there."""
        path = folder / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(folder, data["deployment"], data["project"],
                       [Record(**r) for r in data["records"]],
                       {k: Machine(**m) for k, m in data["machines"].items()})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeployError(f"{path} is not a readable deployment state ({exc}); restore it from a backup: "
                              "without it flctl cannot know what it created") from None

    @classmethod
    def open(cls, folder: Path, project: str) -> DeploymentState:
        """The state in `folder`, or a new deployment of `project` (not written until something is recorded)."""
        state = cls.load(folder)
        if state is None:
            return cls(folder, secrets.token_hex(3), project)
        if state.project != project:
            raise DeployError(f"{folder} holds a deployment of project '{state.project}', not '{project}'; "
                              "destroy it first or set `deployment` in the inventory to another folder")
        return state

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        data: dict[str, Any] = {"api_version": 1, "deployment": self.deployment, "project": self.project,
                                "records": [asdict(r) for r in self.records],
                                "machines": {k: asdict(m) for k, m in sorted(self.machines.items())}}
        write_atomic(self.folder / STATE_FILE, (json.dumps(data, indent=1) + "\n").encode(), 0o600)

    # ---- changes (each saved at once) -----------------------------------------------------------------------
    def find(self, participant: str, kind: str) -> Record | None:
        return next((r for r in self.records if r.participant == participant and r.kind == kind), None)

    def add(self, record: Record) -> Record:
        self.records = [r for r in self.records if (r.participant, r.kind, r.id) !=
                        (record.participant, record.kind, record.id)] + [record]
        self.save()
        return record

    def forget(self, record: Record) -> None:
        self.records = [r for r in self.records if r != record]
        self.save()

    def set_machine(self, machine: Machine) -> None:
        self.machines[machine.participant] = machine
        self.save()

    def drop_machine(self, participant: str) -> None:
        if self.machines.pop(participant, None) is not None:
            self.save()


@contextlib.contextmanager
def locked(folder: Path, who: str = "another flctl deploy or destroy",
           error: type[Exception] = DeployError) -> Iterator[None]:
    """Hold the folder's lock (a deployment's; `flctl play`'s state): a second run on it is refused with `error`,
    saying `who` is working on it, not interleaved."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"{who} is working on {folder}; wait for it to end") from None
        yield
    finally:
        os.close(fd)
