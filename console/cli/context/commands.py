"""The four `flctl context` commands: each a thin layer over flctl.cloud.federation_contexts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The context's name (letters, digits, . _ -).")]


def add(name: NameArgument,
        kit: Annotated[Path, typer.Argument(metavar="KIT", help="An admin's startup kit folder.", file_okay=False)],
        use: Annotated[bool, typer.Option("--use", help="Also make it the current context.")] = False,
        json_out: JsonOption = False) -> None:
    """Add a federation context: NAME acts as the admin kit KIT (the first one added becomes current)."""
    from flctl.cloud import federation_contexts as fc
    from flctl.node.config.kit import load_kit

    loaded = load_kit(kit, verify=True)  # a kit that is not there, not signed or changed is refused now, not later
    if loaded.info.kind != "admin":
        terminal.abort(f"{kit} is a {loaded.info.kind}'s kit; a context acts as an admin: give an admin's kit", 2)
    contexts = fc.add(name, kit, use)
    if json_out:
        terminal.print_json(_listing(contexts))
        return
    now = " (current)" if contexts.current == name else f"; `flctl context use {name}` makes it current"
    terminal.success(f"context {name}: {loaded.info.name} of {loaded.info.project} at {loaded.target}{now}")


def ls(json_out: JsonOption = False) -> None:
    """List the federation contexts; the current one is marked *."""
    from flctl.cloud import federation_contexts as fc

    contexts = fc.load()
    if json_out:
        terminal.print_json(_listing(contexts))
        return
    if not contexts.kits:
        terminal.info(f"no contexts yet ({fc.path()}); add one with `flctl context add NAME KIT`")
        return
    terminal.table(["", "name", "kit"], [("*" if n == contexts.current else "", n, str(contexts.kits[n]))
                                         for n in sorted(contexts.kits)])


def use(name: NameArgument, json_out: JsonOption = False) -> None:
    """Make NAME the current context: commands act as its admin kit unless --kit, FLCTL_KIT or --context say."""
    from flctl.cloud import federation_contexts as fc

    contexts = fc.use(name)
    if json_out:
        terminal.print_json(_listing(contexts))
        return
    terminal.success(f"current context: {name} ({contexts.kits[name]})")


def rm(name: NameArgument, json_out: JsonOption = False) -> None:
    """Remove the context NAME (its kit folder is left as it is)."""
    from flctl.cloud import federation_contexts as fc

    contexts = fc.remove(name)
    if json_out:
        terminal.print_json(_listing(contexts))
        return
    terminal.success(f"removed context {name}" + ("" if contexts.current else "; no context is current now"))


def _listing(contexts: object) -> dict[str, object]:
    from flctl.cloud.federation_contexts import Contexts

    assert isinstance(contexts, Contexts)
    return {"current": contexts.current or None,
            "contexts": [{"name": n, "kit": str(contexts.kits[n]), "current": n == contexts.current}
                         for n in sorted(contexts.kits)]}
