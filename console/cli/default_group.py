"""A command group with a default command: `flctl provision P.yml` runs `flctl provision build P.yml`."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup


class DefaultGroup(TyperGroup):
    """Runs the command named `default` when the first argument is not one of the group's commands."""

    default = "build"
    bare = False
    """Whether the group named alone runs its default command (`flctl certs`) instead of showing its help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if (args and args[0] not in self.commands and args[0] not in ("--help", "-h")) or (not args and self.bare):
            args = [self.default, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, f"[{self.default.upper()} ARGS] | COMMAND [ARGS]...")
