"""Read NVIDIA FLARE's project.yml (api_version 3) as an flctl project, so its users can move over.

Pure translation: FLARE data in, flctl (api_version 1) data out, with a map from each
translated location back to the one the user wrote, and warnings for what flctl ignores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flctl.provisioner.yaml_source import Loc, format_loc

# Builders whose work flctl does itself: listed in a FLARE project, they need no warning.
NATIVE_BUILDERS = {
    "nvflare.lighter.impl.workspace.WorkspaceBuilder": "kit folders",
    "nvflare.lighter.impl.static_file.StaticFileBuilder": "configs and start scripts",
    "nvflare.lighter.impl.template.TemplateBuilder": "configs and start scripts",
    "nvflare.lighter.impl.cert.CertBuilder": "certificates",
    "nvflare.lighter.impl.signature.SignatureBuilder": "kit signatures",
}
_TOP_KEYS = {"api_version", "name", "description", "participants", "builders"}
_COMMON_KEYS = {"name", "type", "org"}
_SERVER_KEYS = {"fed_learn_port", "host_names", "default_host"}
_IGNORED_SERVER_KEYS = {
    "admin_port": "flctl serves sites and admins on one port (fed_learn_port)",
    "listening_host": "the server listens on all interfaces",
    "connection_security": "flctl always uses mutual TLS",
}


@dataclass
class Translation:
    """A FLARE project rewritten as flctl data."""

    data: dict[str, Any]
    origin: dict[Loc, Loc] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[tuple[Loc, str]] = field(default_factory=list)

    def original(self, loc: Loc) -> Loc:
        """Where the user wrote what now lives at `loc` (longest known prefix wins)."""
        for cut in range(len(loc), -1, -1):
            prefix = loc[:cut]
            if prefix in self.origin:
                return self.origin[prefix] + loc[cut:]
        return loc


def translate(data: dict[str, Any], shown: str) -> Translation:
    """Turn FLARE's `participants` list into flctl's server, sites and admins."""
    out: dict[str, Any] = {"api_version": 1, "sites": [], "admins": []}
    tr = Translation(out)
    for key in ("name", "description"):
        if key in data:
            out[key] = data[key]
            tr.origin[(key,)] = (key,)
    for key in data:
        if key not in _TOP_KEYS:
            tr.warnings.append(f"{shown}: '{key}' is not used by flctl and was ignored")
    _translate_builders(data.get("builders"), shown, tr)
    participants = data.get("participants")
    if not isinstance(participants, list):
        # Leave the error to the schema: a project without a server.
        tr.origin[("server",)] = ("participants",)
        return tr
    servers = 0
    for i, item in enumerate(participants):
        where = ("participants", i)
        if not isinstance(item, dict):
            tr.problems.append((where, "each participant must be a mapping with name, type and org"))
            continue
        kind = item.get("type")
        if kind == "server":
            servers += 1
            if servers > 1:
                tr.warnings.append(f"{shown}: {format_loc(where)}: flctl runs one server; '{item.get('name')}' "
                                   "was ignored")
                continue
            out["server"] = _server(item, where, tr, shown)
        elif kind == "client":
            tr.origin[("sites", len(out["sites"]))] = where
            out["sites"].append(_pick(item, ("name", "org"), where, tr, shown))
        elif kind == "admin":
            tr.origin[("admins", len(out["admins"]))] = where
            out["admins"].append(_pick(item, ("name", "org", "role"), where, tr, shown))
        elif kind in ("overseer", "relay"):
            tr.warnings.append(f"{shown}: {format_loc(where)}: participants of type '{kind}' are not used by "
                               f"flctl; '{item.get('name')}' was ignored")
        else:
            tr.problems.append(((*where, "type"), f"unknown participant type '{kind}'; use server, client or admin"))
    if "server" not in out:
        tr.origin[("server",)] = ("participants",)
    return tr


def _server(item: dict[str, Any], where: Loc, tr: Translation, shown: str) -> dict[str, Any]:
    server: dict[str, Any] = {k: item[k] for k in ("name", "org") if k in item}
    tr.origin[("server",)] = where
    if "fed_learn_port" in item:
        server["port"] = item["fed_learn_port"]
        tr.origin[("server", "port")] = (*where, "fed_learn_port")
    hosts = list(item.get("host_names") or [])
    if item.get("default_host"):
        hosts.append(item["default_host"])
    if hosts:
        server["hosts"] = hosts
        tr.origin[("server", "hosts")] = (*where, "host_names")
    for key in item:
        if key in _IGNORED_SERVER_KEYS:
            tr.warnings.append(f"{shown}: {format_loc((*where, key))} was ignored: {_IGNORED_SERVER_KEYS[key]}")
        elif key not in _COMMON_KEYS | _SERVER_KEYS:
            tr.warnings.append(f"{shown}: {format_loc((*where, key))} is not used by flctl and was ignored")
    return server


def _pick(item: dict[str, Any], keys: tuple[str, ...], where: Loc, tr: Translation, shown: str) -> dict[str, Any]:
    for key in item:
        if key not in (*keys, "type"):
            tr.warnings.append(f"{shown}: {format_loc((*where, key))} is not used by flctl and was ignored")
    return {k: item[k] for k in keys if k in item}


def _translate_builders(builders: Any, shown: str, tr: Translation) -> None:
    if builders is None:
        return
    if not isinstance(builders, list):
        tr.warnings.append(f"{shown}: builders is not a list and was ignored")
        return
    for i, builder in enumerate(builders):
        path = builder.get("path") if isinstance(builder, dict) else None
        if path not in NATIVE_BUILDERS:
            tr.warnings.append(
                f"{shown}: builders[{i}]: '{path}' is not known to flctl and was skipped "
                "(flctl builds kit folders, configs, certificates and signatures itself)"
            )
