"""Real sshd processes for tests: one per simulated host, on 127.0.0.1, each with its own config, host key and PID.

Runs as root (the tests' machine): root logs in with a test key only (PermitRootLogin
prohibit-password). `SshHost.stop()` ends the daemon by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_key(path: Path, kind: str = "ed25519") -> Path:
    """An unencrypted key pair at `path` and `path`.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class SshHost:
    """One sshd listening on 127.0.0.1:`port`; `root` is this host's own folder (config, keys, install dir)."""

    root: Path
    port: int
    host_key: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def install_dir(self) -> Path:
        return self.root / "opt"

    def known_hosts_line(self) -> str:
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def start(self, authorized_keys: Path | list[Path], extra_config: str = "") -> SshHost:
        """Start sshd; it accepts the keys in `authorized_keys` (one file, or several read in turn); `extra_config`:
        sshd_config lines put first (sshd keeps the first value of a keyword, so they win over the defaults here)."""
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder sshd insists on
        config = self.root / "sshd_config"
        keys = " ".join(map(str, authorized_keys if isinstance(authorized_keys, list) else [authorized_keys]))
        config.write_text(
            f"{extra_config}Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {self.root}/sshd.pid\n"
            f"AuthorizedKeysFile {keys}\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "Subsystem sftp internal-sftp\nMaxStartups 50\nMaxSessions 50\nLogLevel ERROR\n")
        self.install_dir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "sshd.log", "ab"))  # noqa: SIM115 - lives with sshd
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


def start_hosts(root: Path, count: int, authorized_keys: Path) -> list[SshHost]:
    """`count` sshd processes, each in root/host-N with its own host key."""
    hosts = []
    for i in range(1, count + 1):
        folder = root / f"host-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        hosts.append(SshHost(folder, free_port(), make_key(folder / "ssh_host_ed25519_key")).start(authorized_keys))
    return hosts
