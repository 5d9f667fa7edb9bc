"""The rollout inventory: which participant's kit goes to which host, and how to reach it.

An inventory is YAML (see playbooks/rollouts/). Every problem is reported with the file, the
line and the field, all at once, like project.yml (flctl.provisioner.project_loader).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flctl.cloud.machine_specs import AwsMachine, AzureMachine
from flctl.provisioner.errors import InputError, Problem
from flctl.provisioner.yaml_source import Loc, YamlDocument, format_loc, load_yaml


class HostSpec(BaseModel):
    """One machine and the participant whose node runs on it."""

    model_config = ConfigDict(extra="forbid")

    participant: str = Field(description="Name of the participant (a kit folder inside `kits`): the server or a site.")
    provider: Literal["ssh", "aws", "azure"] = Field("ssh", description="ssh: an existing machine at `address`; "
                                                     "aws or azure: a machine `flctl deploy aws|azure` creates "
                                                     "as the `aws:` or `azure:` block says.")
    address: str | None = Field(None, description="Host name or IP address the SSH server listens on (ssh hosts "
                                                  "only: a cloud machine's address comes from its deployment).")
    aws: AwsMachine | None = Field(None, description="The EC2 instance to create (provider: aws).")
    azure: AzureMachine | None = Field(None, description="The Azure VM to create (provider: azure).")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    user: str = Field(description="SSH user.")
    key_file: str | None = Field(None, description="Private key file (relative to the inventory); "
                                                   "omit it to use the SSH agent.")
    sudo: bool = Field(False, description="The user may run `sudo -n`: a systemd service is installed "
                                          "when the host runs systemd.")
    python: str = Field("python3", description="Python (3.11 or newer) on the host that makes the virtual environment.")
    install_dir: str = Field(description="Absolute folder on the host that holds releases, the venv and the "
                                         "node's workspace.")
    system_site_packages: bool = Field(False, description="Make the venv with --system-site-packages so "
                                       "dependencies the host Python already has are not reinstalled "
                                       "(faster; off by default: the host then depends on its own packages).")
    venv_root: str | None = Field(None, description="Absolute folder for virtual environments [default: "
                                  "INSTALL_DIR/venvs]; nodes on one machine may share one, so the "
                                  "wheels are installed once.")
    min_free_mb: int = Field(500, ge=0, description="Refuse the host when its install folder has less free disk.")

    @field_validator("install_dir", "venv_root")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or any(c in value for c in "'\"\\`$;&|<> \t\n"):
            raise ValueError("must be an absolute path on the host, without spaces or shell characters")
        return posixpath.normpath(value)

    @property
    def venvs(self) -> str:
        return self.venv_root or f"{self.install_dir}/venvs"

    @field_validator("participant", "address", "user", "python")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "'\"\\`$;&|<> \t\n")):
            raise ValueError("must be non-empty and contain no spaces, quotes or shell characters")
        return value

    @model_validator(mode="after")
    def _provider_fields(self) -> HostSpec:
        cloud = {"aws": self.aws, "azure": self.azure}
        if self.provider == "ssh":
            if self.address is None:
                raise ValueError("[address] 'address' is required (or set provider: aws or azure)")
            given = [name for name, block in cloud.items() if block is not None]
            if given:
                raise ValueError(f"[{given[0]}] '{given[0]}' is only allowed with provider: {given[0]}")
            return self
        if self.address is not None:
            raise ValueError(f"[address] 'address' is not allowed with provider: {self.provider}; the machine's "
                             "address comes from the deployment")
        if cloud[self.provider] is None:
            raise ValueError(f"[provider] provider: {self.provider} needs an '{self.provider}:' block describing "
                             "the machine")
        other = "azure" if self.provider == "aws" else "aws"
        if cloud[other] is not None:
            raise ValueError(f"[{other}] '{other}' is not allowed with provider: {self.provider}")
        if self.aws is not None and self.aws.key_name is not None and self.key_file is None:
            raise ValueError("[key_file] aws.key_name needs key_file: the private key of that key pair")
        if self.azure is not None and self.user in AZURE_RESERVED_USERS:
            raise ValueError(f"[user] Azure refuses the user name {self.user!r}; pick another, e.g. flctl")
        return self

    @property
    def cloud(self) -> AwsMachine | AzureMachine | None:
        return self.aws if self.provider == "aws" else self.azure if self.provider == "azure" else None

    @property
    def where(self) -> str:
        """The host's address, or where it will be created."""
        if self.address is not None:
            return self.address
        return f"aws:{self.aws.region}" if self.aws else f"azure:{self.azure.location}" if self.azure else "?"


AZURE_RESERVED_USERS = {"root", "admin", "administrator", "guest", "user", "test", "sys", "support", "adm",
                        "admin1", "admin2", "user1", "user2", "user3", "test1", "test2", "test3", "owner"}


class InventorySpec(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    api_version: Literal[1] = Field(description="Inventory format version: 1.")
    kits: str = Field(description="The provisioned kits folder (`.../<project>/prod_NN`), relative to the inventory.")
    admin_kit: str | None = Field(None, description="Participant name of an admin kit in `kits`, used to check "
                                                    "that sites are online; without it a site is healthy "
                                                    "when its process runs.")
    known_hosts: str | None = Field(None, description="known_hosts file for host keys [default: ~/.ssh/known_hosts]. "
                                    "Machines flctl creates in a cloud use their deployment's own file instead.")
    ssh_config: str | None = Field(None, description="An OpenSSH client config whose HostName, Port, "
                                   "IdentityFile and ProxyCommand apply to matching hosts (bastions, SSM, "
                                   "port forwards) [default: none is read].")
    deployment: str | None = Field(None, description="Folder of the cloud deployment's state (created resources, "
                                   "generated SSH keys, host keys) [default: INVENTORY_STEM.deploy beside the "
                                   "inventory].")
    health_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for a started node to become healthy.")
    hosts: list[HostSpec] = Field(min_length=1, description="One entry per node to run.")


@dataclass(frozen=True)
class Inventory:
    """A valid inventory with its relative paths resolved against the inventory's folder."""

    source: Path
    spec: InventorySpec
    kits: Path
    known_hosts: Path
    ssh_config: Path | None = None
    deployment: Path | None = None

    @property
    def state_dir(self) -> Path:
        """Where the cloud deployment of this inventory keeps its state."""
        return self.deployment or self.source.parent / f"{self.source.stem}.deploy"

    @property
    def hosts(self) -> list[HostSpec]:
        return self.spec.hosts

    def key_file(self, host: HostSpec) -> Path | None:
        return None if host.key_file is None else _resolve(self.source.parent, host.key_file)

    def kit(self, participant: str) -> Path:
        return self.kits / participant

    @property
    def admin_kit(self) -> Path | None:
        return None if self.spec.admin_kit is None else self.kit(self.spec.admin_kit)

    def host(self, name: str) -> HostSpec:
        """The host running participant `name` (or at address `name`); KeyError when none does."""
        for host in self.hosts:
            if name in (host.participant, host.address):
                return host
        raise KeyError(name)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def load_inventory(path: Path) -> Inventory:
    """Read and validate `path`; raise InputError listing every problem with its line."""
    return inventory_from_document(load_yaml(path), path)


def inventory_from_document(doc: YamlDocument, path: Path) -> Inventory:
    def where(loc: Loc, message: str) -> Problem:
        return Problem(doc.path, doc.line_of(loc), format_loc(loc), message)

    if not isinstance(doc.data, dict):
        raise InputError([where((), "expected a mapping with api_version, kits and hosts")])
    problems: list[Problem] = []
    spec: InventorySpec | None = None
    try:
        spec = InventorySpec.model_validate(doc.data)
    except ValidationError as exc:
        problems += [where(*_located(err)) for err in exc.errors()]
        problems += _missing_addresses(doc.data, {p.field for p in problems}, where)
    if spec is not None:
        problems += _check_references(spec, path.parent, where)
    if problems:
        raise InputError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    assert spec is not None
    base = path.parent
    known = _resolve(base, spec.known_hosts) if spec.known_hosts else Path("~/.ssh/known_hosts").expanduser()
    return Inventory(path, spec, _resolve(base, spec.kits), known,
                     _resolve(base, spec.ssh_config) if spec.ssh_config else None,
                     _resolve(base, spec.deployment) if spec.deployment else None)


def _check_references(spec: InventorySpec, base: Path, where: Any) -> list[Problem]:
    """Kits that must exist, key files that must exist, participants and addresses used twice."""
    problems: list[Problem] = []
    kits = _resolve(base, spec.kits)
    if not kits.is_dir():
        problems.append(where(("kits",), f"{kits} is not a folder; give the prod_NN folder `flctl provision` made"))
        return problems
    if spec.admin_kit is not None and not (kits / spec.admin_kit / "startup").is_dir():
        problems.append(where(("admin_kit",), f"no kit '{spec.admin_kit}' in {kits}"))
    seen: dict[str, int] = {}
    endpoints: dict[tuple[str, int, str], int] = {}
    for i, host in enumerate(spec.hosts):
        if not (kits / host.participant / "startup").is_dir():
            names = sorted(p.name for p in kits.iterdir() if (p / "startup").is_dir())
            problems.append(where(("hosts", i, "participant"), f"no kit '{host.participant}' in {kits}; "
                                  f"kits there: {', '.join(names) or 'none'}"))
        if host.participant in seen:
            problems.append(where(("hosts", i, "participant"),
                                  f"'{host.participant}' is already deployed by hosts[{seen[host.participant]}]"))
        seen.setdefault(host.participant, i)
        endpoint = (host.address or f"{host.provider}:{host.participant}", host.port, host.install_dir)
        if endpoint in endpoints:
            problems.append(where(("hosts", i, "install_dir"), f"hosts[{endpoints[endpoint]}] already installs "
                                  "into this folder on this host; give each node its own install_dir"))
        endpoints.setdefault(endpoint, i)
        if host.key_file is not None and not _resolve(base, host.key_file).is_file():
            problems.append(where(("hosts", i, "key_file"), f"{_resolve(base, host.key_file)} is not a file"))
    if spec.ssh_config is not None and not _resolve(base, spec.ssh_config).is_file():
        problems.append(where(("ssh_config",), f"{_resolve(base, spec.ssh_config)} is not a file"))
    return problems


def _located(err: Any) -> tuple[tuple[Any, ...], str]:
    """The error's location and message; a host-level check names its field as `[field] message`."""
    loc, message = tuple(err["loc"]), _message(err)
    match = re.match(r"^\[(\w+)\] (.*)$", message, re.DOTALL)
    return ((*loc, match.group(1)), match.group(2)) if match else (loc, message)


def _missing_addresses(data: dict[str, Any], reported: set[str], where: Any) -> list[Problem]:
    """An ssh host without an address, also when the host has other errors (its model check then never ran)."""
    hosts = data.get("hosts")
    problems = []
    for i, host in enumerate(hosts if isinstance(hosts, list) else []):
        field = format_loc(("hosts", i, "address"))
        if isinstance(host, dict) and host.get("provider", "ssh") == "ssh" and "address" not in host \
                and field not in reported:
            problems.append(where(("hosts", i, "address"), "'address' is required (or set provider: aws or azure)"))
    return problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model whose field `loc` ends in."""
    parents = loc[:-1]
    if "aws" in parents:
        return AwsMachine
    if "azure" in parents:
        return AzureMachine
    return HostSpec if "hosts" in parents else InventorySpec


def _message(err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'; allowed here: {', '.join(_model_at(loc).model_fields)}"
    if kind == "missing":
        return f"'{loc[-1]}' is required"
    if kind == "literal_error":
        return f"{err['input']!r} is not allowed; use {err['ctx']['expected']}"
    if kind == "string_pattern_mismatch":
        field = _model_at(loc).model_fields.get(str(loc[-1]))
        hint = field.description if field is not None and field.description else f"match {err['ctx']['pattern']}"
        return f"{err['input']!r} is not valid here: {hint}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
