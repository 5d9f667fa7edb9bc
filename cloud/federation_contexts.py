"""Federation contexts: named admin kits, one of them current, as kubectl's contexts and Flower's federations.

Stored in `<config>/flctl/config.toml` (`$XDG_CONFIG_HOME`, else ~/.config), readable by its owner only (0600),
written whole through a rename, holding paths and never a copy of a key:

    current = "prod"

    [contexts."prod"]
    kit = "/home/me/kits/admin@hospital.org"

A command that talks to a server acts as `--kit`, else `$FLCTL_KIT`, else `--context NAME`, else
`$FLCTL_CONTEXT`, else the current context, else the local federation's admin (`console/cli/admin_kit.py`).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from flctl.cloud.local_context import config_dir
from flctl.provisioner.errors import InputError, Problem

FILE = "config.toml"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""What a context may be called: letters, digits, '.', '_' and '-', starting with a letter or digit (a word a shell
never splits; written as a quoted TOML key, so a dot is not a nested table)."""


class ContextError(InputError):
    """A context that does not exist, a name that is not allowed, or a config.toml that cannot be read (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__([Problem(file=str(path()), line=None, field="", message=message)])
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class Contexts:
    """The contexts of config.toml: name -> admin kit folder, and the current one ("" when none)."""

    kits: dict[str, Path] = field(default_factory=dict)
    current: str = ""

    def kit(self, name: str) -> Path:
        """The kit of context `name`; ContextError naming the contexts there are when there is no such context."""
        if name not in self.kits:
            there = ", ".join(sorted(self.kits)) or "none yet; add one with `flctl context add NAME KIT`"
            raise ContextError(f"no context '{name}' (contexts: {there})")
        return self.kits[name]


def path() -> Path:
    """Where the contexts are kept."""
    return config_dir() / FILE


def load(file: Path | None = None) -> Contexts:
    """The contexts in `file` (default: `path()`); none when it does not exist."""
    file = file or path()
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        return Contexts()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContextError(f"{file}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ContextError(f"{file}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"current", "contexts"})
    if unknown:
        raise ContextError(f"{file}: '{unknown[0]}' is not a key of flctl's config.toml (keys: current, contexts)")
    entries = data.get("contexts", {})
    current = data.get("current", "")
    if not isinstance(entries, dict) or not isinstance(current, str):
        raise ContextError(f"{file}: expected `current = \"NAME\"` and a [contexts.NAME] table per context")
    kits: dict[str, Path] = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("kit"), str) or set(entry) != {"kit"}:
            raise ContextError(f"{file}: contexts.{name}: expected one key, kit = \"PATH\" (an admin kit folder)")
        kits[name] = Path(entry["kit"])
    if current and current not in kits:
        raise ContextError(f"{file}: current = '{current}' is not one of its contexts "
                           f"({', '.join(sorted(kits)) or 'none'})")
    return Contexts(kits, current)


def save(contexts: Contexts, file: Path | None = None) -> None:
    """Write `contexts` to `file` (default: `path()`), 0600 from the start, through a rename."""
    file = file or path()
    file.parent.mkdir(parents=True, exist_ok=True)
    text = render(contexts)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, file)


def render(contexts: Contexts) -> str:
    """config.toml's text for `contexts` (strings as TOML basic strings: JSON's escapes are TOML's)."""
    lines = ["# flctl's federation contexts: `flctl context add|ls|use|rm` edit this file.\n"]
    if contexts.current:
        lines.append(f"current = {json.dumps(contexts.current)}\n")
    for name in sorted(contexts.kits):
        kit = json.dumps(str(contexts.kits[name]), ensure_ascii=False)
        lines.append(f"\n[contexts.{json.dumps(name)}]\nkit = {kit}\n")
    return "".join(lines)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ContextError(f"context name {name!r} is not allowed: use letters, digits, '.', '_' and '-' (up to 63, "
                           "starting with a letter or digit)")
    return name


def add(name: str, kit: Path, use: bool = False) -> Contexts:
    """Add (or change) context `name` for the admin kit folder `kit`; it becomes current when it is the first, or
    with `use`."""
    check_name(name)
    contexts = load()
    contexts.kits[name] = kit.expanduser().absolute()
    if use or not contexts.current:
        contexts.current = name
    save(contexts)
    return contexts


def use(name: str) -> Contexts:
    contexts = load()
    contexts.kit(name)
    contexts.current = name
    save(contexts)
    return contexts


def remove(name: str) -> Contexts:
    """Remove context `name` (the kit's folder is left as it is); no context is current when it was."""
    contexts = load()
    contexts.kit(name)
    del contexts.kits[name]
    if contexts.current == name:
        contexts.current = ""
    save(contexts)
    return contexts


def chosen_kit(name: str | None) -> Path | None:
    """The kit of context `name`, else of `$FLCTL_CONTEXT`, else of the current context; None when none is set."""
    name = name or os.environ.get("FLCTL_CONTEXT") or None
    contexts = load()
    if name:
        return contexts.kit(name)
    return contexts.kits.get(contexts.current) if contexts.current else None
