"""The sites of a hierarchical federation as a tree: each relay followed by what is below it (pure)."""

from __future__ import annotations

from flctl.node.admin.admin_types import SiteInfo


def tree_order(sites: list[SiteInfo]) -> list[tuple[int, SiteInfo]]:
    """`sites` in tree order with each one's depth (0: connected to the server): a relay's sites and relays follow
    it, one level deeper, each level in the order given (a flat federation's list is unchanged). A site whose parent
    is not listed is shown at the top level."""
    names = {s.name for s in sites}
    below: dict[str, list[SiteInfo]] = {}
    for site in sites:
        below.setdefault(site.parent if site.parent in names else "", []).append(site)
    out: list[tuple[int, SiteInfo]] = []
    seen: set[str] = set()

    def walk(parent: str, depth: int) -> None:
        for site in below.get(parent, []):
            if site.name in seen:
                continue
            seen.add(site.name)
            out.append((depth, site))
            walk(site.name, depth + 1)

    walk("", 0)
    out += [(0, s) for s in sites if s.name not in seen]  # a cycle (none is provisioned): shown flat
    return out


def shown_name(depth: int, name: str) -> str:
    """`name` indented under its relay for a table: two spaces a level and a branch mark."""
    return f"{'  ' * (depth - 1)}└ {name}" if depth else name
