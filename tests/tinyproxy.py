"""tinyproxy (Debian's `tinyproxy` package) on 127.0.0.1 for tests: a real forward proxy that allows CONNECT to the
ports it is given only, optionally with Basic authentication, logging each request to a file the test reads."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .federation import free_port


class Tinyproxy:
    def __init__(self, root: Path, connect_ports: list[int], auth: tuple[str, str] | None = None) -> None:
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        self.port = free_port()
        self.log = root / "tinyproxy.log"
        self.auth = auth
        conf = root / "tinyproxy.conf"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 600", f"LogFile \"{self.log}\"",
                 "LogLevel Info", "MaxClients 100", "Allow 127.0.0.1",
                 *(f"ConnectPort {port}" for port in connect_ports)]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        conf.write_text("\n".join(lines) + "\n")
        # -d: in the foreground, so the test owns the process and stops it by its id.
        self.process = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"tinyproxy did not listen on 127.0.0.1:{self.port}; see {self.log}")

    @property
    def url(self) -> str:
        user = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"http://{user}127.0.0.1:{self.port}"

    def logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def needs_tinyproxy() -> None:
    if not (shutil.which("tinyproxy") or Path("/usr/bin/tinyproxy").exists() or Path("/usr/sbin/tinyproxy").exists()):
        pytest.skip("needs tinyproxy (apt-get install -y tinyproxy; bash scripts/setup.sh installs it)")


@contextlib.contextmanager
def tinyproxy(root: Path, connect_ports: list[int], auth: tuple[str, str] | None = None) -> Iterator[Tinyproxy]:
    needs_tinyproxy()
    proxy = Tinyproxy(root, connect_ports, auth)
    try:
        yield proxy
    finally:
        proxy.close()
