"""The playbook of `flctl play`: one YAML file naming the project.yml, where each participant runs (an inventory, inline
or a path), the checks to run first and the jobs to run after (see playbooks/play.yml).

Every problem is reported with the file, the line and the key, all at once, like the inventory and project.yml
(flctl.cloud.inventory, flctl.provisioner.project_loader). An inline inventory is the inventory's own schema
(flctl.cloud.inventory.InventorySpec) without `api_version` and `kits`: the kits are the ones play provisions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flctl.cloud.inventory import Inventory, inventory_from_document
from flctl.provisioner.errors import InputError, Problem
from flctl.provisioner.project import Project
from flctl.provisioner.project_loader import load_project
from flctl.provisioner.schema_messages import message as schema_message
from flctl.provisioner.yaml_source import Loc, YamlDocument, format_loc, load_yaml

EXAMPLE_JOBS = Path(__file__).resolve().parent.parent / "playbooks" / "jobs"
"""Where a job named by its example's name (hello-numpy) is found."""
DEFAULT_JOB = "hello-numpy"


class JobSpec(BaseModel):
    """One job run after the federation is healthy; it must finish."""

    model_config = ConfigDict(extra="forbid")

    job: str = Field(description="A job folder or job file (relative to the playbook), or an example's name under "
                                 "playbooks/jobs (hello-numpy).")
    rounds: int | None = Field(1, ge=1, description="Run this many rounds instead of the job's own (null: the job's).")
    timeout_s: float = Field(600.0, gt=0, description="Seconds the job has to finish.")


class ChecksSpec(BaseModel):
    """The checks run before anything is deployed."""

    model_config = ConfigDict(extra="forbid")

    preflight: bool = Field(True, description="Run `flctl preflight` over every host to roll out first; one whose "
                                              "own side fails (unreachable, no Python 3.11, too little disk) is not "
                                              "deployed.")


class PlaybookSpec(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    api_version: Literal[1] = Field(description="Playbook format version: 1.")
    project: str = Field(description="The project.yml to provision (relative to the playbook).")
    inventory: str | dict[str, Any] = Field(description="Where each participant runs: an inventory file (its "
                                            "`kits` is replaced by the kits play provisions) or the inventory "
                                            "itself, inline, without api_version and kits.")
    workspace: str | None = Field(None, description="The provisioning workspace (CA and prod_NN folders) "
                                  "[default: STATE/workspace].")
    state: str | None = Field(None, description="The state folder: the journal of every state reached, the kits "
                              "rolled out, the cloud deployment [default: PLAYBOOK_STEM.play beside the playbook].")
    passphrase_env: str | None = Field(None, description="Environment variable holding the CA key's passphrase.")
    checks: ChecksSpec = Field(default_factory=ChecksSpec, description="The checks run first.")
    jobs: list[JobSpec] = Field(default_factory=lambda: [JobSpec(job=DEFAULT_JOB)],
                                description="Jobs run once every participant is healthy, in order; each must "
                                            "finish [default: hello-numpy, 1 round]; [] runs none.")
    parallel: int = Field(4, ge=1, le=64, description="Hosts worked on at once.")

    @field_validator("passphrase_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError("must be an environment variable's name (letters, digits, _)")
        return value


@dataclass(frozen=True)
class Playbook:
    """A valid playbook, its paths resolved against its folder."""

    source: Path
    spec: PlaybookSpec
    project_file: Path
    project: Project
    state_dir: Path
    workspace: Path
    inventory_doc: YamlDocument  # the inventory (inline or read from its file) with api_version and kits filled in
    inventory_source: Path  # what the inventory's relative paths are relative to (its file, or the playbook)
    jobs: list[tuple[Path, JobSpec]]
    digest: str  # of the playbook's bytes

    @property
    def kits(self) -> Path:
        """The kits rolled out: one link per participant to the prod folder where its kit last changed."""
        return self.state_dir / "kits"

    @property
    def journal(self) -> Path:
        return self.state_dir / "events.jsonl"

    def where(self, participant: str) -> str:
        """Where a participant's node runs, for tables: its address, else its target (localhost for local)."""
        for host in self.inventory_doc.data["hosts"]:
            if host["participant"] == participant:
                provider = str(host.get("provider", "ssh"))
                return str(host.get("address") or _where_without_address(provider))
        return "-"

    @property
    def participants(self) -> list[str]:
        """The participants run on hosts, in the inventory's order."""
        return [str(h["participant"]) for h in self.inventory_doc.data["hosts"]]

    def admin(self) -> str:
        """The admin whose kit asks the server (health, smoke jobs): the inventory's admin_kit, else the project's
        first project_admin."""
        named = self.inventory_doc.data.get("admin_kit")
        if named:
            return str(named)
        admins = [a.name for a in self.project.admins if a.role == "project_admin"] or \
            [a.name for a in self.project.admins]
        return admins[0]

    def inventory(self) -> Inventory:
        """The inventory over the kits play provisioned (they must exist: call after provisioning)."""
        return inventory_from_document(self.inventory_doc, self.inventory_source)


def resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def load_playbook(path: Path) -> Playbook:
    """Read and validate `path` and the project and inventory it names; InputError listing every problem."""
    doc = load_yaml(path)

    def where(loc: Loc, message: str) -> Problem:
        return Problem(doc.path, doc.line_of(loc), format_loc(loc), message)

    if not isinstance(doc.data, dict):
        raise InputError([where((), "expected a mapping with api_version, project and inventory")])
    base = path.resolve().parent
    problems: list[Problem] = []
    spec: PlaybookSpec | None = None
    try:
        spec = PlaybookSpec.model_validate(doc.data)
    except ValidationError as exc:
        for e in exc.errors():
            if e["loc"][:1] == ("inventory",) and len(e["loc"]) > 1:  # neither a path nor a mapping
                if not any(p.field == "inventory" for p in problems):
                    problems.append(where(("inventory",), "give an inventory file's path or the inventory "
                                                          "itself (a mapping with hosts)"))
                continue
            problems.append(where(tuple(e["loc"]), _message(e)))
    given_project = doc.data.get("project")
    project_file = resolve(base, given_project) if isinstance(given_project, str) else None
    if project_file is not None and not project_file.is_file():
        problems.append(where(("project",), f"{project_file} is not a file; name the project.yml to provision"))
        project_file = None
    project = load_project(project_file).project if project_file is not None else None
    state_given = doc.data.get("state")
    state_dir = resolve(base, state_given) if isinstance(state_given, str) else base / f"{path.stem}.play"
    inventory = doc.data.get("inventory")
    inv: tuple[YamlDocument, Path, str] | None = None
    if isinstance(inventory, str | dict):
        try:
            inv = _inventory_document(doc, inventory, base, state_dir)
            if project is not None:
                _check_inventory(inv, {p.name for p in project.participants()})
        except InputError as exc:
            problems += exc.problems
    if problems or spec is None or project is None or inv is None or project_file is None:
        raise InputError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    workspace = resolve(base, spec.workspace) if spec.workspace else state_dir / "workspace"
    inv_doc, inv_source, _prefix = inv
    admin = inv_doc.data.get("admin_kit")
    if admin is None and not project.admins and spec.jobs:
        raise InputError([where(("jobs",), "the project has no admin to submit the jobs with; add one to "
                                           f"{project_file} or set jobs: []")])
    jobs = []
    for i, job in enumerate(spec.jobs):
        found = _job_path(base, job.job)
        if found is None:
            known = sorted(p.name for p in EXAMPLE_JOBS.iterdir() if (p / "job.yml").is_file())
            problems.append(where(("jobs", i, "job"), f"no job folder or file '{job.job}' and no example of that "
                                                      f"name; examples: {', '.join(known)}"))
        else:
            jobs.append((found, job))
    if problems:
        raise InputError(problems)
    return Playbook(path.resolve(), spec, project_file, project, state_dir, workspace, inv_doc, inv_source, jobs,
                    hashlib.sha256(path.read_bytes()).hexdigest())


def _job_path(base: Path, name: str) -> Path | None:
    for candidate in (resolve(base, name), EXAMPLE_JOBS / name):
        if candidate.is_dir() and (candidate / "job.yml").is_file():
            return candidate
        if candidate.is_file() and candidate.suffix in (".yml", ".yaml"):
            return candidate
    return None


def _check_inventory(inv: tuple[YamlDocument, Path, str], participants: set[str]) -> None:
    """The inventory's own schema and references, its problems named as in the playbook (`inventory.` inline)."""
    doc, source, prefix = inv
    try:
        inventory_from_document(doc, source, participants=participants)
    except InputError as exc:
        raise InputError([Problem(p.file, p.line, f"{prefix}{p.field}" if p.field else prefix.rstrip("."),
                                  p.message) for p in exc.problems]) from None


def _inventory_document(doc: YamlDocument, given_inventory: str | dict[str, Any], base: Path, state_dir: Path
                        ) -> tuple[YamlDocument, Path, str]:
    """The inventory as a document of its own (lines kept), with api_version and kits (play's) filled in; the
    inventory's source path; the prefix its keys get in messages (`inventory.` when inline)."""
    kits = str(state_dir / "kits")
    if isinstance(given_inventory, str):
        source = resolve(base, given_inventory)
        inner = load_yaml(source)
        if not isinstance(inner.data, dict):
            raise InputError([Problem(inner.path, inner.line_of(()), "", "expected a mapping with hosts")])
        data = {**inner.data, "kits": kits}
        return YamlDocument(inner.path, data, inner.lines), source, ""
    lines = {loc[1:]: line for loc, line in doc.lines.items() if loc[:1] == ("inventory",)}
    given = dict(given_inventory)
    for key in ("api_version", "kits"):
        if key in given:
            raise InputError([Problem(doc.path, doc.line_of(("inventory", key)), f"inventory.{key}",
                                      f"unknown key '{key}' in an inline inventory; play provisions the kits itself")])
    data = {"api_version": 1, "kits": kits, "deployment": str(state_dir / "deploy"), **given}
    return YamlDocument(doc.path, data, lines), doc_source(doc, base), "inventory."


def doc_source(doc: YamlDocument, base: Path) -> Path:
    """The playbook's path (an inline inventory's relative paths are relative to the playbook's folder)."""
    return base / Path(doc.path).name


def _message(err: Any) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        model: type[BaseModel] = PlaybookSpec
        if loc[:1] == ("jobs",):
            model = JobSpec
        elif loc[:1] == ("checks",):
            model = ChecksSpec
        return f"unknown key '{loc[-1]}'; allowed here: {', '.join(model.model_fields)}"
    if kind == "missing":
        return f"'{loc[-1]}' is required"
    if kind == "literal_error":
        return f"{err['input']!r} is not allowed; use {err['ctx']['expected']}"
    return schema_message(err, PlaybookSpec)


def _where_without_address(provider: str) -> str:
    """What the provider's deploy target calls a host with no address (this machine: localhost; a cloud: its name)."""
    from flctl.cloud.targets import TARGETS

    target = TARGETS.get(provider)
    return target.where_unaddressed if target is not None else provider
