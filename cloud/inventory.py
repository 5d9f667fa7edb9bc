"""The rollout inventory: which participant's kit goes to which host, and how to reach it.

An inventory is YAML (see playbooks/rollouts/). Every problem is reported with the file, the
line and the field, all at once, like project.yml (flctl.provisioner.project_loader).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from flctl.cloud import targets
from flctl.provisioner.errors import InputError, Problem
from flctl.provisioner.schema_messages import message as schema_message
from flctl.provisioner.yaml_source import Loc, YamlDocument, format_loc, load_yaml

Block = TypeVar("Block", bound=BaseModel)


class HostSpec(BaseModel):
    """One machine and the participant whose node runs on it."""

    model_config = ConfigDict(extra="forbid")

    participant: str = Field(description="Name of the participant (a kit folder inside `kits`): the server or a site.")
    provider: str = Field(targets.DEFAULT, description="The deploy target that runs the node (flctl.cloud.targets): "
                          "ssh: an existing machine at `address`; local: this machine, no SSH; aws or azure: a "
                          "machine `flctl deploy aws|azure` creates as the host's `aws:` or `azure:` block says "
                          "(a target with a block takes it under its own name); slurm: a batch job on an HPC "
                          "cluster whose login node is `address`, its kit in `install_dir` on the shared file "
                          "system, as the host's `slurm:` block says.")
    address: str | None = Field(None, description="Host name or IP address the SSH server listens on (ssh hosts "
                                                  "only: a cloud machine's address comes from its deployment).")
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
    _block: BaseModel | None = PrivateAttr(None)  # the `<provider>:` block, validated by the target's spec

    @field_validator("provider")
    @classmethod
    def _known_target(cls, value: str) -> str:
        if value not in targets.TARGETS:
            generated = {"docker": "a compose file", "k8s": "Kubernetes manifests"}.get(value)
            hint = f" ({value} is not a host to roll out to: `flctl deploy {value} WORKSPACE -o DIR` writes " \
                f"{generated} for the whole project)" if generated else ""
            raise ValueError(f"{value!r} is not a deploy target; use one of: {', '.join(targets.names())}{hint}")
        return value

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

    @model_validator(mode="wrap")
    @classmethod
    def _with_block(cls, data: Any, handler: ModelWrapValidatorHandler[HostSpec]) -> HostSpec:
        """Validate the common fields and each target block (`aws:`…) with its target's schema, errors together;
        then the provider's own rules (flctl.cloud.targets.base.DeployTarget.check)."""
        if not isinstance(data, dict):
            return handler(data)
        blocks = {name: value for name, value in data.items() if name in block_targets()}
        errors: list[Any] = []
        host: HostSpec | None = None
        try:
            host = handler({key: value for key, value in data.items() if key not in blocks})
        except ValidationError as exc:
            errors += exc.errors()
        validated: dict[str, BaseModel] = {}
        for name, value in blocks.items():
            try:
                validated[name] = block_targets()[name].model_validate(value)
            except ValidationError as exc:
                errors += [{**err, "loc": (name, *err["loc"])} for err in exc.errors()]
        if errors or host is None:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        given = [name for name in validated if name != host.provider]
        if given:
            raise ValueError(f"[{given[0]}] '{given[0]}' is only allowed with provider: {given[0]}")
        host._block = validated.get(host.provider)
        target = targets.get(host.provider)
        if target.spec is not None and host._block is None:
            raise ValueError(f"[provider] provider: {host.provider} needs an '{host.provider}:' block describing "
                             "the machine")
        target.check(host)
        return host

    @property
    def block(self) -> BaseModel | None:
        """The host's `<provider>:` block (its target's spec), or None when its target has none."""
        return self._block

    def block_as(self, spec: type[Block]) -> Block:
        """The host's block, which its target knows to be a `spec`."""
        if not isinstance(self._block, spec):
            raise ValueError(f"{self.participant} has no {self.provider}: block of type {spec.__name__}")
        return self._block

    @property
    def where(self) -> str:
        """The host's address, or where its target will make it."""
        return targets.get(self.provider).where(self)


def block_targets() -> dict[str, type[BaseModel]]:
    """The inventory blocks the deploy targets define: target name -> the schema of its block."""
    return {name: target.spec for name, target in targets.TARGETS.items() if target.spec is not None}


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


def inventory_from_document(doc: YamlDocument, path: Path, participants: set[str] | None = None) -> Inventory:
    """Validate an inventory document; `participants`: the kits are not made yet (flctl play provisions them), so
    each host's participant is checked against these names instead of the kits folder."""

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
        problems += _missing_required(doc.data, {p.field for p in problems}, where)
    if spec is not None:
        problems += _check_references(spec, path.parent, where, participants)
    if problems:
        raise InputError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    assert spec is not None
    base = path.parent
    known = _resolve(base, spec.known_hosts) if spec.known_hosts else Path("~/.ssh/known_hosts").expanduser()
    return Inventory(path, spec, _resolve(base, spec.kits), known,
                     _resolve(base, spec.ssh_config) if spec.ssh_config else None,
                     _resolve(base, spec.deployment) if spec.deployment else None)


def _check_references(spec: InventorySpec, base: Path, where: Any, participants: set[str] | None = None
                      ) -> list[Problem]:
    """Kits that must exist, key files that must exist, participants and addresses used twice."""
    problems: list[Problem] = []
    kits = _resolve(base, spec.kits)
    if participants is not None:
        for i, host in enumerate(spec.hosts):
            if host.participant not in participants:
                problems.append(where(("hosts", i, "participant"), f"'{host.participant}' is not a participant of "
                                      f"the project; participants: {', '.join(sorted(participants))}"))
        if spec.admin_kit is not None and spec.admin_kit not in participants:
            problems.append(where(("admin_kit",), f"'{spec.admin_kit}' is not an admin of the project"))
    elif not kits.is_dir():
        problems.append(where(("kits",), f"{kits} is not a folder; give the prod_NN folder `flctl provision` made"))
        return problems
    if participants is None and spec.admin_kit is not None and not (kits / spec.admin_kit / "startup").is_dir():
        problems.append(where(("admin_kit",), f"no kit '{spec.admin_kit}' in {kits}"))
    seen: dict[str, int] = {}
    endpoints: dict[tuple[str, int, str], int] = {}
    for i, host in enumerate(spec.hosts):
        if participants is None and not (kits / host.participant / "startup").is_dir():
            names = sorted(p.name for p in kits.iterdir() if (p / "startup").is_dir())
            problems.append(where(("hosts", i, "participant"), f"no kit '{host.participant}' in {kits}; "
                                  f"kits there: {', '.join(names) or 'none'}"))
        if host.participant in seen:
            problems.append(where(("hosts", i, "participant"),
                                  f"'{host.participant}' is already deployed by hosts[{seen[host.participant]}]"))
        seen.setdefault(host.participant, i)
        endpoint = (targets.get(host.provider).machine_of(host), host.port, host.install_dir)
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


def _missing_required(data: dict[str, Any], reported: set[str], where: Any) -> list[Problem]:
    """Fields a host's target requires (an ssh host's address), also when the host has other errors (its
    target's check then never ran)."""
    hosts = data.get("hosts")
    problems = []
    for i, host in enumerate(hosts if isinstance(hosts, list) else []):
        target = targets.TARGETS.get(host.get("provider", targets.DEFAULT)) if isinstance(host, dict) else None
        for name, message in target.required.items() if target is not None else ():
            field = format_loc(("hosts", i, name))
            if name not in host and field not in reported:
                problems.append(where(("hosts", i, name), message))
    return problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model whose field `loc` ends in: a target's block, a host or the whole file."""
    parents = loc[:-1]
    if len(parents) >= 3 and parents[0] == "hosts" and parents[2] in block_targets():
        return block_targets()[parents[2]]
    return HostSpec if "hosts" in parents else InventorySpec


def _message(err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        model = _model_at(loc)
        allowed = [*model.model_fields, *(block_targets() if model is HostSpec else ())]
        return f"unknown key '{loc[-1]}'; allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"'{loc[-1]}' is required"
    if kind == "literal_error":
        return f"{err['input']!r} is not allowed; use {err['ctx']['expected']}"
    if kind == "string_pattern_mismatch":
        field = _model_at(loc).model_fields.get(str(loc[-1]))
        hint = field.description if field is not None and field.description else f"match {err['ctx']['pattern']}"
        return f"{err['input']!r} is not valid here: {hint}"
    return schema_message(err, InventorySpec)  # ranges, types and our own checks, worded as every schema message is
