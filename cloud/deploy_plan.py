"""Planning a rollout (pure): from what should be on a host and what is there, the steps that get it there.

Nothing here connects or writes: `plan_host` takes the desired release (checksums of the kit and
of the wheels) and the host's observed state (the probe's JSON) and returns the steps. A plan
with no steps means the host already runs exactly this release.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flctl.cloud.deploy_errors import HostUnsuitable
from flctl.cloud.inventory import HostSpec

MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Desired:
    """What one host should run: a kit and a wheel set, identified by checksums."""

    participant: str
    kit_files: dict[str, str]  # path inside the kit -> sha256
    wheels: dict[str, str]  # wheel file name -> sha256
    python: str
    system_site_packages: bool

    @property
    def venv_id(self) -> str:
        return _digest([*sorted(self.wheels.items()), ("python", self.python),
                        ("system", str(self.system_site_packages))])

    @property
    def release_id(self) -> str:
        return _digest([("venv", self.venv_id), *sorted(self.kit_files.items())])

    def manifest(self) -> dict[str, Any]:
        return {"release": self.release_id, "participant": self.participant, "venv": self.venv_id,
                "kit": self.kit_files, "wheels": self.wheels}


@dataclass(frozen=True)
class Observed:
    """What the probe found on a host."""

    python: str
    glibc: str
    machine: str
    free_mb: int
    writable: bool
    systemd: bool
    uid: int
    current: str | None = None
    previous: str | None = None
    release: dict[str, Any] | None = None
    wheels: dict[str, str] = field(default_factory=dict)
    venvs: list[str] = field(default_factory=list)
    mode: str | None = None
    node_pid: int | None = None
    supervisor_pid: int | None = None

    @classmethod
    def from_probe(cls, data: dict[str, Any]) -> Observed:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def running(self) -> bool:
        return self.node_pid is not None


@dataclass(frozen=True)
class Step:
    """One thing to do on a host; `detail` is what the plan prints, `kind` its name in tests and logs.

    One subclass per kind: the executor looks up what to do by the step's type, and the shell each
    kind runs is in flctl.cloud.remote_scripts.
    """

    kind: ClassVar[str] = "step"
    detail: str
    files: tuple[str, ...] = ()

    def __init_subclass__(cls, kind: str, **rest: Any) -> None:
        super().__init_subclass__(**rest)
        cls.kind = kind


class UploadWheels(Step, kind="upload_wheels"):
    """Upload the wheels the host lacks (`files`)."""


class CreateVenv(Step, kind="create_venv"):
    """Install the uploaded wheels offline into the release's virtual environment."""


class UploadKit(Step, kind="upload_kit"):
    """Upload the kit as a new release (`files`: the kit files that changed)."""


class VerifyKit(Step, kind="verify_kit"):
    """Verify the uploaded kit's signature on the host."""


class InstallService(Step, kind="install_service"):
    """Install the systemd unit or the supervisor script."""


class StopNode(Step, kind="stop"):
    """Stop the running node."""


class SwitchRelease(Step, kind="switch"):
    """Make the new release current (the old one becomes `previous`)."""


class StartNode(Step, kind="start"):
    """Start the node."""


class WaitHealthy(Step, kind="wait_healthy"):
    """Wait until the node is healthy."""


@dataclass(frozen=True)
class HostPlan:
    host: HostSpec
    desired: Desired
    observed: Observed
    mode: str  # systemd or process
    steps: list[Step]

    @property
    def changes(self) -> bool:
        return bool(self.steps)


def _digest(items: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for key, value in items:
        h.update(key.encode() + b"\0" + value.encode() + b"\n")
    return h.hexdigest()[:12]


def kit_checksums(kit: Path) -> dict[str, str]:
    """sha256 of every file of a kit folder, by its path inside the kit (the node's workspace left out)."""
    out = {}
    for path in sorted(kit.rglob("*")):
        rel = path.relative_to(kit)
        if path.is_file() and rel.parts[0] != "workspace" and "__pycache__" not in rel.parts:
            out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def check_host(host: HostSpec, observed: Observed) -> None:
    """HostUnsuitable when the host cannot run a node."""
    major, _, minor = observed.python.partition(".")
    if (int(major), int(minor or 0)) < MIN_PYTHON:
        raise HostUnsuitable(f"{host.participant}: {host.python} on {host.where} is Python {observed.python}; "
                             "flctl needs 3.11 or newer: set `python` in the inventory to one")
    if observed.free_mb < host.min_free_mb:
        raise HostUnsuitable(f"{host.participant}: only {observed.free_mb} MB free under {host.install_dir} on "
                             f"{host.where}, {host.min_free_mb} MB needed; free some disk space")
    if not observed.writable:
        raise HostUnsuitable(f"{host.participant}: {host.user} cannot write {host.install_dir} on {host.where}; "
                             "create it owned by that user or pick another install_dir")


def service_mode(host: HostSpec, observed: Observed, sudo_ok: bool) -> str:
    """systemd when the host runs it and we may use it (root, or passwordless sudo asked for); else process."""
    return "systemd" if observed.systemd and (observed.uid == 0 or (host.sudo and sudo_ok)) else "process"


def plan_host(host: HostSpec, desired: Desired, observed: Observed, mode: str, force_restart: bool = False) -> HostPlan:
    """The steps that make `host` run `desired` (none when it already does and its node runs)."""
    check_host(host, observed)
    steps: list[Step] = []
    same_release = observed.current == desired.release_id and observed.release is not None
    if same_release and observed.running and observed.mode == mode and not force_restart:
        return HostPlan(host, desired, observed, mode, [])
    if not same_release:
        missing = tuple(n for n, sha in sorted(desired.wheels.items()) if observed.wheels.get(n) != sha)
        if missing:
            steps.append(UploadWheels(f"upload {len(missing)} of {len(desired.wheels)} wheels", missing))
        if desired.venv_id not in observed.venvs:
            site = " with the system's site-packages" if desired.system_site_packages else ""
            steps.append(CreateVenv(f"install the wheels offline into venv {desired.venv_id}{site}"))
        before = (observed.release or {}).get("kit", {})
        changed = tuple(n for n, sha in sorted(desired.kit_files.items()) if before.get(n) != sha)
        what = "the kit" if not before else f"the kit ({len(changed)} changed: {', '.join(changed[:4])}" + \
            (", …)" if len(changed) > 4 else ")")
        steps.append(UploadKit(f"upload {what} as release {desired.release_id}", changed))
        steps.append(VerifyKit("verify the kit's signature on the host"))
    steps.append(InstallService("install the systemd service" if mode == "systemd"
                                else "install the supervised background process"))
    if observed.running or (observed.mode is not None and observed.mode != mode):
        steps.append(StopNode(f"stop the running node (release {observed.current})"))
    if not same_release:
        steps.append(SwitchRelease(f"make release {desired.release_id} current"
                                   + (f" (previous: {observed.current})" if observed.current else "")))
    steps.append(StartNode(f"start the {host.participant} node"))
    steps.append(WaitHealthy("wait until the node is healthy"))
    return HostPlan(host, desired, observed, mode, steps)
