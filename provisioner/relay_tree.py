"""The tree of a hierarchical federation: who connects to whom (project.yml's `relays:` and each `parent:`).

Pure: no disk, no network. A relay or a site names its parent: another relay, or the server (`parent: server`,
the server's own name, or no parent at all). `problems` checks the raw project data (so each problem names its
field and line beside the schema's own); `parent_map` is what goes into the kits of the server and the relays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the node reads the tree from its kit without project.yml's schema
    from flctl.provisioner.project import Project

SERVER = "server"
"""The word a `parent:` may use for the server, whatever the server's name."""

Loc = tuple[str | int, ...]


def _is_server(parent: object, server_name: object) -> bool:
    return parent is None or parent == SERVER or (isinstance(server_name, str) and parent == server_name)


def problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Parents that are not relays of the project, and relays whose parents go round in a cycle: one problem each,
    at the `parent` field that is wrong."""
    server = data.get("server")
    server_name = server.get("name") if isinstance(server, dict) else None
    relays = data.get("relays")
    relays = relays if isinstance(relays, list) else []
    relay_parent: dict[str, tuple[object, Loc]] = {}
    for i, relay in enumerate(relays):
        if isinstance(relay, dict) and isinstance(relay.get("name"), str):
            relay_parent[relay["name"]] = (relay.get("parent"), ("relays", i, "parent"))
    known = ", ".join(sorted(relay_parent)) or "none"
    out: list[tuple[Loc, str]] = []
    entries: list[tuple[object, Loc]] = list(relay_parent.values())
    sites = data.get("sites")
    for i, site in enumerate(sites if isinstance(sites, list) else []):
        if isinstance(site, dict):
            entries.append((site.get("parent"), ("sites", i, "parent")))
            if site.get("failover") is not None and _is_server(site.get("parent"), server_name):
                out.append((("sites", i, "failover"), "failover: server is for a site under a relay (it connects to "
                                                      "the server while its relay is down); this site has no relay "
                                                      "parent"))
    for parent, loc in entries:
        if not _is_server(parent, server_name) and isinstance(parent, str) and parent not in relay_parent:
            out.append((loc, f"'{parent}' is not a relay of this project; a parent is 'server' or one of the "
                             f"relays ({known})"))
    for name, (_, loc) in relay_parent.items():
        seen = [name]
        parent = relay_parent[name][0]
        while not _is_server(parent, server_name) and isinstance(parent, str) and parent in relay_parent:
            if parent in seen:
                if parent == name:  # reported once, at each relay of the cycle
                    cycle = " -> ".join([*seen, name])
                    out.append((loc, f"relay '{name}' is in a cycle of parents ({cycle}); every chain of parents "
                                     "must end at the server"))
                break
            seen.append(parent)
            parent = relay_parent[parent][0]
    return out


def parent_map(project: Project) -> dict[str, str]:
    """Every relay and site whose parent is a relay, to that relay's name (those under the server are left out)."""
    out: dict[str, str] = {}
    named = [(r.name, r.parent) for r in project.relays] + [(s.name, s.parent) for s in project.sites]
    for name, parent in named:
        if parent is not None and not _is_server(parent, project.server.name):
            out[name] = parent
    return out


def parent_of(project: Project, name: str) -> str | None:
    """The relay `name` connects to, or None when it connects to the server."""
    return parent_map(project).get(name)


def top_of(parents: dict[str, str], name: str) -> str:
    """The server's direct participant through which `name` is reached: `name` itself when it is under the server,
    else its highest relay. `parents` has no cycles (provisioning refuses them)."""
    seen = {name}
    while name in parents and parents[name] not in seen:
        name = parents[name]
        seen.add(name)
    return name


def under(parents: dict[str, str], relay: str, name: str) -> bool:
    """Whether `name` is reached through `relay` (its child, its child's child...)."""
    seen = {name}
    while name in parents and parents[name] not in seen:
        name = parents[name]
        if name == relay:
            return True
        seen.add(name)
    return False


def child_toward(parents: dict[str, str], relay: str, name: str) -> str | None:
    """`relay`'s own child through which `name` is reached (`name` itself when it is a direct child); None when
    `name` is not under `relay`."""
    seen = {name}
    while name in parents and parents[name] not in seen:
        if parents[name] == relay:
            return name
        name = parents[name]
        seen.add(name)
    return None
