"""The transport a rollout runs its steps through: connect, put a file, run a command, close.

One subclass per transport (`flctl.cloud.ssh_connector`); planning and the executor know only this.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

from flctl.cloud.deploy_errors import RemoteCommandFailed


@dataclass(frozen=True)
class CommandResult:
    """What a command run on the host left behind."""

    exit_code: int
    stdout: str
    stderr: str


class Connector(ABC):
    """A session with one host."""

    name: str = "host"

    @abstractmethod
    def connect(self) -> None:
        """Open the session; raise a DeployError saying why it cannot be opened."""

    @abstractmethod
    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write `data` to `remote_path` on the host (its folder must exist)."""

    @abstractmethod
    def run(self, command: str, timeout_s: float = 300.0) -> CommandResult:
        """Run a POSIX shell command on the host."""

    @abstractmethod
    def close(self) -> None:
        """End the session; safe to call twice."""

    def check(self, command: str, what: str, timeout_s: float = 300.0) -> str:
        """Run `command`; its stdout, or RemoteCommandFailed naming `what` and the command's last output line."""
        result = self.run(command, timeout_s)
        if result.exit_code != 0:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            last = lines[-1] if lines else f"exit code {result.exit_code}"
            raise RemoteCommandFailed(f"{what} failed on {self.name}: {last}")
        return result.stdout

    def run_sh(self, script: str, timeout_s: float = 300.0) -> CommandResult:
        """Run `script` with /bin/sh whatever the user's login shell is."""
        return self.run(f"sh -c {shlex.quote(script)}", timeout_s)

    def __enter__(self) -> Connector:
        self.connect()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
