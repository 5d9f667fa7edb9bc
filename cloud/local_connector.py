"""A connector to this machine: commands run with /bin/sh here, files are written here (the `local` target)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flctl.cloud.connector import CommandResult, Connector
from flctl.cloud.deploy_errors import RemoteCommandFailed


class LocalConnector(Connector):
    """Runs a rollout's commands on this machine, as this user."""

    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def connect(self) -> None:
        """Nothing to open."""

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        path = Path(remote_path)
        part = path.with_name(f".{path.name}.put")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(part, mode)
        os.replace(part, path)

    def run(self, command: str, timeout_s: float = 300.0) -> CommandResult:
        try:
            done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout_s,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RemoteCommandFailed(f"a command on {self.name} ran past {timeout_s:g} s: {command[:80]}") from None
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        """Nothing to close."""
