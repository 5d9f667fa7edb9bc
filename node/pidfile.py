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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def remove(workspace: Path) -> None:
    path = workspace / NAME
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass
