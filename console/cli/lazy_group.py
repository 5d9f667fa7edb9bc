"""A command group whose sub-groups are built on first use, so a command pays only for its own group.

`flctl job submit` imports and builds the `job` group alone: the other groups' modules are never
imported and their parameters never inspected. Listings (`flctl --help`, typo suggestions) see
every name in registration order; showing a group's help builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup
from typer.main import get_group_from_info
from typer.models import TyperInfo


class _Commands(MutableMapping[str, Any]):
    """Name -> click command, in registration order; a lazy group is built when it is first looked up."""

    def __init__(self, built: MutableMapping[str, Any], lazy: dict[str, Callable[[], Any]]) -> None:
        self._entries: dict[str, Any] = dict(built)
        self._lazy = dict(lazy)
        self._entries.update(dict.fromkeys(name for name in lazy if name not in self._entries))

    def __getitem__(self, name: str) -> Any:
        command = self._entries[name]
        if command is None and name in self._lazy:
            command = self._entries[name] = self._lazy.pop(name)()
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self._lazy.pop(name, None)
        self._entries[name] = command

    def __delitem__(self, name: str) -> None:
        self._lazy.pop(name, None)
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def built(self, name: str) -> bool:
        """Whether `name` is a command already built (a lazy group not yet looked up is not)."""
        return self._entries.get(name) is not None


class LazyGroup(TyperGroup):
    """A TyperGroup with sub-groups built on demand: subclass it and fill `groups` (name -> Typer factory)."""

    groups: ClassVar[dict[str, Callable[[], typer.Typer]]] = {}
    summaries: ClassVar[dict[str, str]] = {}
    """A group's help text, known without building it: `flctl --help` lists the groups from these alone."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands: _Commands = _Commands(self.commands, {name: self._builder(name, make)
                                                  for name, make in self.groups.items()})

    def _builder(self, name: str, make: Callable[[], typer.Typer]) -> Callable[[], Any]:
        def build() -> Any:
            # What `app.add_typer(make(), name=name)` builds, with this group's settings (and Typer's default
            # short pretty exceptions, which flctl keeps).
            return get_group_from_info(TyperInfo(make(), name=name), pretty_exceptions_short=True,
                                       rich_markup_mode=self.rich_markup_mode, suggest_commands=self.suggest_commands)

        return build

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: listing builds nothing

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Typer's listing, with a group not built yet shown by its summary (building every group, and importing
        what each imports, would cost `flctl --help` a tenth of a second)."""
        from typer._click.utils import make_default_short_help

        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if not self.commands.built(name) and name in self.summaries:
                rows.append((name, make_default_short_help(self.summaries[name], limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
