"""A node's PID file in its workspace: written at start, removed at stop, read by `flctl node stop`."""

from __future__ import annotations

import os
from pathlib import Path

NAME = "node.pid"


def write(workspace: Path) -> Path:
    path = workspace / NAME
    path.write_text(f"{os.getpid()}\n")
    return path


def read(workspace: Path) -> int | None:
    try:
        pid = int((workspace / NAME).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


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


def remove(workspace: Path) -> None:
    path = workspace / NAME
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass
