"""A progress bar on stderr for long transfers, shown only to a person: on a terminal, without --json or --quiet.

The work reports `(done, total or None)` through the callback this yields; the bar is drawn by rich
(imported only when shown) and removed when the work ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flctl.console.cli import terminal

ProgressCallback = Callable[[int, int | None], None]


def wanted(json_out: bool) -> bool:
    """Whether a bar should be drawn: a terminal on stderr, and neither --json nor --quiet."""
    return not json_out and not terminal.settings.quiet and terminal.interactive()


@contextmanager
def byte_progress(description: str, json_out: bool = False) -> Iterator[ProgressCallback | None]:
    """A callback that moves a bytes bar, or None when no bar is wanted (the work then reports to no one)."""
    if not wanted(json_out):
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=terminal.err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
