"""The --workspace option of `flctl poc …` and the one place its errors become exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from flctl.console.cli import exit_codes
from flctl.console.cli.terminal import abort

PocWorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", file_okay=False, show_default=False,
                 help="The local federation's folder [default: $FLCTL_POC_WORKSPACE, else the last one "
                      "prepared, else ~/.local/share/flctl/poc].")]

_CODES = {"usage": exit_codes.BAD_INPUT, "failed": exit_codes.FAILED, "timeout": exit_codes.TIMED_OUT}


def resolve(workspace: Path | None) -> Path:
    from flctl.cloud.local_plan import default_workspace

    return (workspace or default_workspace()).expanduser().absolute()


@contextmanager
def local_errors() -> Iterator[None]:
    """Turn a `flctl.cloud.local.LocalError` into one sentence and its exit code."""
    from flctl.cloud.local import LocalError

    try:
        yield
    except LocalError as exc:
        abort(str(exc), _CODES.get(exc.kind, exit_codes.FAILED))


def leave() -> NoReturn:
    """Exit 0 now that the output is written, without the interpreter's teardown of every module loaded.

    `poc start` and `poc stop` hold nothing that needs cleaning up (their nodes run in sessions of their own),
    and the teardown took 0.1 s, 0.3 s while the nodes' spare job processes start: a sixth of `poc stop`.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
