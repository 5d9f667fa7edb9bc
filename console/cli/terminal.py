"""All CLI output goes through here: messages to stderr, results (tables, JSON) to stdout.

With `--json` a command prints only JSON on stdout; warnings and errors still go
to stderr, so the JSON stays parseable.

`out` and `err` are rich consoles made on first use, so a command that prints only JSON
never imports rich.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from flctl.console.visible_text import hanging, visible

if TYPE_CHECKING:
    from rich.console import Console

    out: Console
    err: Console


def __getattr__(name: str) -> Console:
    """`out` (stdout) and `err` (stderr), made when first asked for."""
    if name not in ("out", "err"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    console = Console(stderr=name == "err", soft_wrap=True)
    globals()[name] = console
    return console


def _console(name: str) -> Console:
    made: Console | None = globals().get(name)  # a test may have put its own console here
    return made if made is not None else __getattr__(name)


def _err() -> Console:
    return _console("err")


def _out() -> Console:
    return _console("out")


@dataclass
class _Settings:
    quiet: bool = False  # `flctl --quiet`: info, success and progress print nothing


settings = _Settings()


def set_quiet(value: bool) -> None:
    settings.quiet = value


def escape(text: str) -> str:
    """`text` for Rich to print as it is: no markup read in it, no control character the terminal would act on
    (`visible`: a message or a cell may hold what a peer wrote)."""
    from rich.markup import escape as rich_escape

    return rich_escape(visible(text))


class Abort(Exception):
    """Stop the command with a one-sentence message and an exit code (see exit_codes)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def abort(message: str, code: int) -> NoReturn:
    raise Abort(message, code)


def info(message: str) -> None:
    if not settings.quiet:
        _err().print(escape(message))


def success(message: str) -> None:
    if not settings.quiet:
        _err().print(f"[green]✓[/green] {escape(message)}")


def warning(message: str) -> None:
    _err().print(f"[yellow]warning:[/yellow] {escape(message)}")


def error(message: str) -> None:
    _err().print(f"[bold red]error:[/bold red] {escape(message)}")


def print_json(data: Any) -> None:
    """`data` as JSON on stdout (strict: see `strict_json`)."""
    sys.stdout.write(json.dumps(strict_json(data), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def json_line(data: Any) -> None:
    """One JSON object on one line of stdout, flushed at once: the events of a long-running command."""
    sys.stdout.write(json.dumps(strict_json(data), default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def strict_json(data: Any) -> Any:
    """`data` with every NaN or infinity (a diverged loss) as None: JSON has no such numbers, and Python's `NaN`
    token stops `jq` and every strict parser. The table output shows them as nan and inf."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [strict_json(value) for value in data]
    return data


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    """A table on a terminal; to a pipe or a file, tab-separated lines (a header first, then a line a row; the
    title, when there is one, as a `# title` line before them), never wrapped at any width."""
    out = _out()
    if not out.is_terminal:
        lines = [f"# {_plain(title)}"] if title else []
        lines.append("\t".join(_plain(column) for column in columns))
        lines += ["\t".join(_plain(cell) for cell in row) for row in rows]
        out.file.write("\n".join(lines) + "\n")
        out.file.flush()
        return
    from rich.table import Table

    t = Table(title=escape(title) if title else None, title_justify="left", header_style="bold")
    for column in columns:  # a metric's name is a column: a peer's text
        t.add_column(escape(column), overflow="fold")
    for row in rows:
        t.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
    _out().print(t)


def _plain(cell: Any) -> str:
    """A cell on one line of tab-separated output."""
    return "" if cell is None else visible(str(cell).replace("\t", " ").replace("\n", " "))


def peer_line(prefix: str, text: str) -> None:
    """A line a peer wrote (a site's log line, an audit record) after our `prefix`, to stdout as it was written: no
    markup read, every control character shown as its escape, its own newlines as indented continuation lines
    (`hanging`)."""
    _out().print(hanging(prefix, text), markup=False, highlight=False)


def peer_text(text: str) -> None:
    """Lines a peer wrote (a deployed host's job output), to stdout with every control character but newline and
    tab shown as its escape (`visible`)."""
    _out().print(visible(text), markup=False, highlight=False, end="")


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """A two-column key/value listing."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        _out().print(f"[bold]{escape(key.ljust(width))}[/bold]  {escape(str(value))}")


def interactive() -> bool:
    return _err().is_terminal
