"""A node's PID file in its workspace: written at start, removed at stop, read by `flctl node stop`.

It holds the node's PID, the process's start time (clock ticks since boot, from /proc) and its command line, so a
stale file whose PID now belongs to an unrelated process (the node died, the PID was reused) is recognised as
stale and that process is never signalled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

NAME = "node.pid"


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def write(workspace: Path) -> Path:
    path = workspace / NAME
    pid = os.getpid()
    path.write_text(f"{pid}\n{_start_ticks(pid) or 0}\n{json.dumps(_cmdline(pid) or [])}\n")
    return path


def find(workspace: Path) -> tuple[int | None, str]:
    """(the PID of the node this file names, '') while that node runs; otherwise (None, why the file is stale),
    or (None, '') when there is no PID file."""
    try:
        lines = (workspace / NAME).read_text().splitlines()
    except FileNotFoundError:
        return None, ""
    try:
        pid = int(lines[0].strip())
        ticks = int(lines[1]) if len(lines) > 1 else None
        command = json.loads(lines[2]) if len(lines) > 2 else None
    except (IndexError, ValueError):
        return None, f"{workspace / NAME} is not a PID file (a PID, a start time and a command line)"
    if not alive(pid):
        return None, f"process {pid} named in {workspace / NAME} is not running"
    if ticks is not None and _start_ticks(pid) != ticks:
        return None, f"process {pid} named in {workspace / NAME} started after the node did: it is another process"
    running = _cmdline(pid)
    if running is not None and ((command is not None and running != command) or
                                (command is None and not _looks_like_a_node(running))):
        shown = " ".join(running)[:120]
        return None, f"process {pid} named in {workspace / NAME} runs `{shown}`, not the node"
    return pid, ""


def _looks_like_a_node(command: list[str]) -> bool:
    """For a PID file of the old format (a PID alone): whether `command` is a `flctl node start`."""
    return any("flctl" in part for part in command) and "node" in command and "start" in command


def read(workspace: Path) -> int | None:
    """The PID of the node this workspace's PID file names, while that very node runs."""
    return find(workspace)[0]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def discard(workspace: Path) -> None:
    """Remove a stale PID file (`find` said why)."""
    (workspace / NAME).unlink(missing_ok=True)


def remove(workspace: Path) -> None:
    path = workspace / NAME
    try:
        if int(path.read_text().splitlines()[0].strip()) == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError, IndexError):
        pass
