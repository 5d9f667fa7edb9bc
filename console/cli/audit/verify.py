"""`flctl audit verify FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli import exit_codes, terminal
from console.cli.options import JsonOption


def command(
    file: Annotated[Path, typer.Argument(help="An audit log: WORKSPACE/audit.jsonl of the server or a site.",
                                         exists=True, dir_okay=False)],
    json_out: JsonOption = False,
) -> None:
    """Prove an audit log intact, or name the first record that was changed, removed or inserted (exit 1)."""
    from node.audit import verify

    verdict = verify(file)
    if json_out:
        terminal.print_json({"file": str(file), "ok": verdict.ok, "records": verdict.records,
                             "problem": verdict.problem, "line": verdict.line})
    elif verdict.ok:
        terminal.success(f"{file}: {verdict.records} records, intact")
    else:
        terminal.error(f"{file}: {verdict.problem}")
    if not verdict.ok:
        raise typer.Exit(exit_codes.FAILED)
