"""moto's EC2 in server mode, as its own process on 127.0.0.1, for the AWS deployment tests.

boto3 reaches it through AWS_ENDPOINT_URL, the same variable a user would set for any other
endpoint; the credentials are moto's dummies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.sshd import free_port


class MotoServer:
    """One `moto.server` process; `stop()` ends it by its PID."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=open(log, "ab"))  # noqa: SIM115
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {log.read_text()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not listen")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def client(self, service: str = "ec2", region: str = "eu-west-1") -> object:
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
