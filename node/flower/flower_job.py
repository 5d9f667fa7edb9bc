"""A Flower app folder (a `pyproject.toml` with `[tool.flwr.app.components]`, as `flwr new` makes it) as an flctl
job: `flctl job submit ./my-flower-app` packs it as a `flower` job (its job.yml made here, the app as app/). Pure
reading and one copy; no Flower needed (the app is read as TOML, never imported)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from flctl.node.errors import JobError
from flctl.provisioner.errors import Problem

RELAY = ["python", "-m", "flctl.node.flower.supernode_relay"]
"""The command a Flower job runs at each site: the SuperNode relay."""
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv*", "*.egg-info")


def read_app(folder: Path) -> dict[str, Any] | None:
    """The app's `pyproject.toml` as a mapping when `folder` is a Flower app with no job.yml, else None;
    JobError naming the file when it says it is one but lacks a ServerApp or ClientApp."""
    path = folder / "pyproject.toml"
    if not folder.is_dir() or (folder / "job.yml").exists() or not path.is_file():
        return None
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JobError([Problem(str(path), None, "", f"is not valid TOML: {exc}")]) from None
    flwr = doc.get("tool", {}).get("flwr")
    if not isinstance(flwr, dict):
        return None
    components = flwr.get("app", {}).get("components", {})
    missing = [k for k in ("serverapp", "clientapp") if not isinstance(components.get(k), str)]
    if missing:
        raise JobError([Problem(str(path), None, "tool.flwr.app.components", f"names no {' nor '.join(missing)}; "
                                "a Flower app names both, as `flwr new` writes them (module:attribute)")])
    return doc


def job_name(doc: dict[str, Any], folder: Path) -> str:
    """The job's name: the app's [project] name (or its folder's), made a valid job name."""
    raw = str(doc.get("project", {}).get("name") or folder.resolve().name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:64]
    return name or "flower-app"


def rounds_of(doc: dict[str, Any]) -> int:
    """The app's `num-server-rounds` ([tool.flwr.app.config], Flower's convention), 0 when it has none."""
    value = doc.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}).get("num-server-rounds", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def job_yaml(name: str, rounds: int = 0, min_sites: int = 1) -> str:
    """The job.yml of a Flower app; with `rounds`, run_config repeats its num-server-rounds (flctl's progress)."""
    args = f"{{app: app, run_config: {{num-server-rounds: {rounds}}}}}" if rounds else "{app: app}"
    return (f"# Made by flctl from the Flower app's pyproject.toml: the ServerApp runs on the server, each site's\n"
            f"# SuperNode (and ClientApp) at the site, relayed over flctl (flctl.node.flower).\n"
            f"api_version: 1\nname: {name}\nworkflow: {{type: flower, args: {args}}}\nsites: all\n"
            f"min_sites: {min_sites}\napp:\n  command: [{', '.join(RELAY)}]\n")


def as_job(folder: Path, into: Path) -> Path | None:
    """When `folder` is a Flower app without job.yml: a job folder made of it in the new folder `into` (job.yml and
    the app copied as app/), else None."""
    doc = read_app(folder)
    if doc is None:
        return None
    into.mkdir(parents=True)
    shutil.copytree(folder, into / "app", ignore=IGNORED, symlinks=False)
    (into / "job.yml").write_text(job_yaml(job_name(doc, folder), rounds_of(doc)), encoding="utf-8")
    return into
