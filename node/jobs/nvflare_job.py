"""An NVIDIA FLARE job folder, read: `meta.json`, each app's `config/config_fed_server.json` and
`config/config_fed_client.json`, and its `custom/` code (see /work/shared/PEER-APIS.md §2 for the format).

Reading only: `nvflare_import` maps what is read onto a flctl job. Configs are JSON (`.json`, or a `.conf` that is
JSON); a HOCON `.conf` is refused, naming the file. Template variables (`"{app_script}"`) are filled from the
config's own top-level strings, as NVIDIA FLARE's job templates do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.node.errors import JobError
from flctl.provisioner.errors import Problem

SERVER_CONFIG = "config_fed_server"
CLIENT_CONFIG = "config_fed_client"
_SUFFIXES = (".json", ".conf", ".yaml", ".yml")
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Component:
    """A `{id, path, args}` entry of a config (a workflow, a component or an executor)."""

    id: str
    path: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        """The last part of the dotted path: the class."""
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Executor:
    """A client config's executor and the tasks it takes."""

    tasks: list[str]
    component: Component


@dataclass(frozen=True)
class NvflareApp:
    """One app folder: its configs (as read) and its custom/ folder."""

    name: str
    folder: Path
    server: dict[str, Any] | None
    client: dict[str, Any] | None

    @property
    def custom(self) -> Path:
        return self.folder / "custom"

    def components(self, config: dict[str, Any] | None) -> dict[str, Component]:
        """The components of `config` by id."""
        return {c.id: c for c in _entries(config, "components")}

    def workflows(self) -> list[Component]:
        return _entries(self.server, "workflows")

    def executors(self) -> list[Executor]:
        found = []
        for entry in (self.client or {}).get("executors", []) or []:
            if isinstance(entry, dict) and isinstance(entry.get("executor"), dict):
                tasks = [str(t) for t in entry.get("tasks", []) or []]
                found.append(Executor(tasks, _component(entry["executor"], "executor")))
        return found


@dataclass(frozen=True)
class NvflareJob:
    """The whole job folder: meta.json and its apps by name."""

    folder: Path
    meta: dict[str, Any]
    apps: dict[str, NvflareApp]

    def deploy_map(self) -> dict[str, list[str]]:
        raw = self.meta.get("deploy_map")
        if not isinstance(raw, dict):
            return {name: ["@ALL"] for name in self.apps}
        return {str(app): [str(s) for s in sites] if isinstance(sites, list) else [] for app, sites in raw.items()}


def read_job(folder: Path) -> NvflareJob:
    """Read the NVIDIA FLARE job at `folder`; JobError naming the file (and what is wrong) when it cannot be."""
    if not folder.is_dir():
        raise _error(folder, "is not a folder; give an NVIDIA FLARE job folder (meta.json and app folders)")
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        conf = folder / "meta.conf"
        if conf.is_file():
            meta_path = conf
        else:
            raise _error(folder, "has no meta.json: it is not an NVIDIA FLARE job folder")
    meta = _read_config(meta_path)
    apps: dict[str, NvflareApp] = {}
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        config_dir = child / "config"
        if not config_dir.is_dir():
            continue
        server, client = _find(config_dir, SERVER_CONFIG), _find(config_dir, CLIENT_CONFIG)
        if server is None and client is None:
            continue
        apps[child.name] = NvflareApp(child.name, child, _read_config(server) if server else None,
                                      _read_config(client) if client else None)
    if not apps:
        raise _error(folder, "has no app folder with config/config_fed_server.json or config_fed_client.json")
    return NvflareJob(folder, meta, apps)


def _find(config_dir: Path, stem: str) -> Path | None:
    for suffix in _SUFFIXES:
        path = config_dir / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8", errors="replace")
    data: Any
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _error(path, f"is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if path.suffix == ".conf":
                raise _error(path, "is HOCON, which flctl does not read; write it as JSON (the same keys) and "
                                   "import again") from None
            raise _error(path, f"is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise _error(path, "must hold an object (a mapping) at the top")
    variables = {k: v for k, v in data.items() if isinstance(v, str)}
    filled: dict[str, Any] = _fill(data, variables)
    return filled


def _fill(value: Any, variables: dict[str, str]) -> Any:
    """`value` with each `{name}` in its strings replaced by the config's top-level string `name`."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    return value


def _entries(config: dict[str, Any] | None, key: str) -> list[Component]:
    return [_component(e, key) for e in (config or {}).get(key, []) or [] if isinstance(e, dict)]


def _component(entry: dict[str, Any], key: str) -> Component:
    path = entry.get("path") or entry.get("name") or ""
    args = entry.get("args") if isinstance(entry.get("args"), dict) else {}
    return Component(str(entry.get("id", key)), str(path), dict(args or {}))


def _error(path: Path, message: str) -> JobError:
    return JobError([Problem(str(path), None, "", message)])
