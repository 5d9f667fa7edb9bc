"""Load and validate a project file; every problem names the file, line and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flctl.provisioner import nvflare_project, relay_tree
from flctl.provisioner.errors import InputError, Problem
from flctl.provisioner.project import Project
from flctl.provisioner.schema_messages import message
from flctl.provisioner.yaml_source import Loc, YamlDocument, format_loc, load_yaml


@dataclass
class LoadedProject:
    """A valid project and what the user should know about how it was read."""

    project: Project
    source: str
    warnings: list[str] = field(default_factory=list)


def load_project(path: Path) -> LoadedProject:
    """Read `path` (api_version 1, or NVIDIA FLARE's 3); raise InputError listing every problem."""
    return project_from_document(load_yaml(path))


def project_from_document(doc: YamlDocument) -> LoadedProject:
    data = doc.data
    if not isinstance(data, dict):
        raise InputError([Problem(doc.path, doc.line_of(()), "", "expected a mapping with api_version, name, "
                                  "server, sites and admins")])
    version = data.get("api_version")
    origin = nvflare_project.Translation(data)
    if version == 3:
        origin = nvflare_project.translate(data, doc.path)
        data = origin.data
    elif version != 1:
        raise InputError([Problem(doc.path, doc.line_of(("api_version",)), "api_version",
                                  f"{version!r} is not supported; use 1 (flctl) or 3 (NVIDIA FLARE)")])

    def where(loc: Loc, message: str) -> Problem:
        real = origin.original(loc)
        return Problem(doc.path, doc.line_of(real), format_loc(real), message)

    problems = [where(loc, msg) for loc, msg in origin.problems]
    project: Project | None = None
    try:
        project = Project.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(where(loc, message(err, Project)))
    problems += [where(loc, msg) for loc, msg in _duplicate_names(data)]
    problems += [where(loc, msg) for loc, msg in relay_tree.problems(data)]
    if problems:
        raise InputError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    assert project is not None
    return LoadedProject(project, doc.path, origin.warnings)


def _duplicate_names(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Names used twice (ignoring case), checked on the raw data so they show beside other problems."""
    named: list[tuple[Loc, Any]] = []
    if isinstance(data.get("server"), dict):
        named.append((("server", "name"), data["server"].get("name")))
    for group in ("relays", "sites", "admins"):
        items = data.get(group)
        if isinstance(items, list):
            named += [((group, i, "name"), item.get("name")) for i, item in enumerate(items) if isinstance(item, dict)]
    seen: dict[str, Loc] = {}
    out = []
    for loc, name in named:
        if not isinstance(name, str):
            continue
        if name.lower() in seen:
            out.append((loc, f"'{name}' is already used by {format_loc(seen[name.lower()])}; "
                             "participant names must be unique (ignoring case)"))
        else:
            seen[name.lower()] = loc
    return out
