"""The --workspace option of `flctl poc …` and the one place its errors become exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from console.cli import exit_codes
from console.cli.terminal import abort

PocWorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", file_okay=False, show_default=False,
                 help="The local federation's folder [default: $FLCTL_POC_WORKSPACE, else "
                      "~/.local/share/flctl/poc].")]

_CODES = {"usage": exit_codes.BAD_INPUT, "failed": exit_codes.FAILED, "timeout": exit_codes.TIMED_OUT}


def resolve(workspace: Path | None) -> Path:
    from cloud.local_plan import default_workspace

    return (workspace or default_workspace()).expanduser().absolute()


@contextmanager
def local_errors() -> Iterator[None]:
    """Turn a `cloud.local.LocalError` into one sentence and its exit code."""
    from cloud.local import LocalError

    try:
        yield
    except LocalError as exc:
        abort(str(exc), _CODES.get(exc.kind, exit_codes.FAILED))
