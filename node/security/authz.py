"""Who may do what: a site-owned policy (`local/policy.yml`) and the pure decision over it.

Roles come from the admin's certificate; rights and their conditions from the policy:

    roles:
      lead: {submit_job: any, manage_job: own, download_job: own, view: any, operate: own_org_site}

Conditions: `any`; `own_org` (jobs submitted from the admin's organisation); `own` (the
admin's own jobs); `own_org_site` (only where the site belongs to the admin's organisation);
`none`. The server checks its policy on every Admin call; each site checks its own before it
runs a job.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flctl.node.config.local_yaml import read_local_yaml
from flctl.provisioner.schema_messages import message

Right = Literal["submit_job", "manage_job", "download_job", "view", "operate"]
Condition = Literal["any", "own_org", "own", "own_org_site", "none"]
RIGHTS: tuple[Right, ...] = ("submit_job", "manage_job", "download_job", "view", "operate")
ROLES = ("project_admin", "org_admin", "lead", "member")


class RoleRights(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    submit_job: Condition = "none"
    manage_job: Condition = "none"
    download_job: Condition = "none"
    view: Condition = "none"
    operate: Condition = "none"


class JobRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_signers: Literal["any"] | list[str] = Field(
        "any", description="Admins (by name) or organisations (as org:NAME) whose signed jobs may run here")


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: Literal[1] = 1
    roles: dict[str, RoleRights] = Field(default_factory=dict)
    jobs: JobRules = Field(default_factory=JobRules)


DEFAULT = Policy(roles={
    "project_admin": RoleRights(submit_job="any", manage_job="any", download_job="any", view="any", operate="any"),
    "org_admin": RoleRights(submit_job="none", manage_job="own_org", download_job="own_org", view="any",
                            operate="own_org_site"),
    "lead": RoleRights(submit_job="any", manage_job="own", download_job="own", view="any", operate="own_org_site"),
    "member": RoleRights(view="any"),
})


class PolicyError(ValueError):
    """The policy file is unreadable or invalid."""


def load_policy(path: Path) -> Policy:
    """The policy in `path`; the default when the file does not exist."""
    missing = object()
    raw = read_local_yaml(path, missing=missing, error=PolicyError)
    if raw is missing:  # no file: the default policy
        return DEFAULT
    try:
        return Policy.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"{path}: {where}: {message(first, Policy)}") from None


@dataclass(frozen=True)
class Actor:
    name: str
    org: str
    role: str


@dataclass(frozen=True)
class JobOwner:
    submitter: str
    org: str


def decide(policy: Policy, actor: Actor, right: Right, job: JobOwner | None = None,
           site_org: str | None = None) -> str | None:
    """None when `actor` may use `right` (on `job`, at a site of `site_org`); else the reason, one sentence."""
    rights = policy.roles.get(actor.role)
    if rights is None:
        return f"role '{actor.role}' has no rights in this policy"
    condition: Condition = getattr(rights, right)
    if condition == "any":
        return None
    if condition == "none":
        return f"role '{actor.role}' lacks the right {right}"
    if condition == "own_org_site":
        if site_org is None or site_org == actor.org:
            return None
        return f"role '{actor.role}' has {right} only at sites of its own organisation ({actor.org})"
    if job is None:
        return None  # own / own_org limit which jobs; without a job the right itself is held
    if condition == "own" and job.submitter != actor.name:
        return f"role '{actor.role}' has {right} only on its own jobs; this job was submitted by {job.submitter}"
    if condition == "own_org" and job.org != actor.org:
        return (f"role '{actor.role}' has {right} only on jobs of its organisation ({actor.org}); this job is "
                f"from {job.org}")
    return None


def signer_allowed(policy: Policy, signer: Actor) -> str | None:
    """The site's `jobs.allowed_signers` rule: None when `signer`'s jobs may run here, else why not."""
    allowed = policy.jobs.allowed_signers
    if allowed == "any" or signer.name in allowed or f"org:{signer.org}" in allowed:
        return None
    return f"jobs signed by {signer.name} ({signer.org}) are not allowed by this site's policy"


class PolicyFile:
    """A policy file re-read when it changes, so a site's edits apply without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._policy = load_policy(path)  # refuse to start on an invalid policy
        self._stamp = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def current(self) -> Policy:
        stamp = self._mtime()
        if stamp != self._stamp:
            with contextlib.suppress(PolicyError):  # an invalid edit keeps the last valid policy
                self._policy = load_policy(self.path)
            self._stamp = stamp
        return self._policy
