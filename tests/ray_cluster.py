"""A real multi-node Ray cluster on 127.0.0.1 for tests: a head and worker nodes started with `ray start --block`,
each in its own process group (so a test can kill one node, raylet and workers with it), with a token of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
STORE = str(80 * 1024 * 1024)  # each node's object store: small (the machine is shared)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RayCluster:
    """`ray start` nodes: the head (no CPUs: sites run on the workers) and `workers` nodes of one CPU each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = secrets.token_hex(32)
        # Token auth on (Ray's default), failures seen within about 2 s (not Ray's 15 s or more).
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                    "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_raylet_start_wait_time_s": "120"}  # a loaded machine
        self.head: subprocess.Popen[bytes] | None = None
        self.workers: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        log.write_bytes(b"")  # a restarted node's log: only its own lines are looked at
        with log.open("ab") as out:
            return subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--object-store-memory",
                                     STORE, "--disable-usage-stats", *args], stdout=out, stderr=subprocess.STDOUT,
                                    env=self.env, start_new_session=True)

    def _started(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the node says it runs; kill it and raise if it does not within 150 s."""
        log = self.root / f"{name}.log"
        deadline = time.monotonic() + 150
        while b"Ray runtime started" not in log.read_bytes() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if b"Ray runtime started" not in log.read_bytes():
            self.kill(proc)
            raise RuntimeError(f"ray start {name} failed:\n{log.read_text(errors='replace')[-3000:]}")

    def start_head(self) -> None:
        self.head = self._spawn("head", ["--head", "--port", str(self.port), "--num-cpus", "0",
                                         "--include-dashboard=false"])
        self._started("head", self.head)

    def start_workers(self, *indices: int) -> None:
        """Start worker nodes of one CPU each, one after the other (together, two raylets may pick the same port)."""
        for index in indices:
            self.workers[index] = self._spawn(f"worker-{index}", ["--address", self.address, "--num-cpus", "1"])
            self._started(f"worker-{index}", self.workers[index])

    def kill_worker(self, index: int) -> None:
        self.kill(self.workers.pop(index))

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the node's whole process group (its `ray start`, raylet and workers), and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for index in list(self.workers):
            self.kill_worker(index)
        if self.head is not None:
            self.kill(self.head)
            self.head = None
        # `ray start --head` left its address for a later ray.init() to connect to (it would hang on it)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{self.port}"):
                current.unlink()
