"""All CLI output goes through here: messages to stderr, results (tables, JSON) to stdout.

With `--json` a command prints only JSON on stdout; warnings and errors still go
to stderr, so the JSON stays parseable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Abort(Exception):
    """Stop the command with a one-sentence message and an exit code (see exit_codes)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def abort(message: str, code: int) -> NoReturn:
    raise Abort(message, code)


def info(message: str) -> None:
    err.print(escape(message))


def success(message: str) -> None:
    err.print(f"[green]✓[/green] {escape(message)}")


def warning(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def error(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {escape(message)}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
    out.print(t)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """A two-column key/value listing."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        out.print(f"[bold]{escape(key.ljust(width))}[/bold]  {escape(str(value))}")


def interactive() -> bool:
    return err.is_terminal
