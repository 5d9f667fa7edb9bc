"""`flctl audit tail FILE`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from flctl.console.cli import terminal
from flctl.console.cli.options import JsonOption


def _line(record: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("time", 0)))
    extra = {k: v for k, v in record.items() if k not in ("seq", "time", "actor", "action", "prev", "hash")}
    details = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in extra.items())
    return f"{record.get('seq'):>6} {stamp} {record.get('actor')} {record.get('action')} {details}"


def command(
    file: Annotated[Path, typer.Argument(metavar="FILE",
                                         help="An audit log: WORKSPACE/audit.jsonl of the server or a site.",
                                         exists=True, dir_okay=False)],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many of the last records to show.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records (Ctrl-C ends).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Show the last records of an audit log: who did what, with which arguments, and the result."""
    from flctl.node.security.audit import follow as follow_log
    from flctl.node.security.audit import read

    def show(record: dict[str, Any]) -> None:
        if json_out:
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            terminal.peer_line("", _line(record))
        sys.stdout.flush()

    for record in read(file, lines):
        show(record)
    if follow:
        for record in follow_log(file):
            show(record)
