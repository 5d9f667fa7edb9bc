"""The server's side of a Flower app, as processes: Flower's SuperLink on 127.0.0.1 and `flwr run` against it,
from the Flower venv, with the Fleet API calls the sites relay replayed on it (`replay`). No flctl state here: the
`flower` workflow (`flctl.node.workflows.flower`) drives it."""

from __future__ import annotations

import http.client
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flctl.node.flower.fleet_calls import FleetCall, FleetReply
from flctl.node.flower.flower_python import flower_env, flower_tool
from flctl.node.flower.process_tree import stop_tree

CONNECTION = "flctl"
"""The SuperLink connection `flwr run` is given (FLWR_HOME/config.toml of the job)."""
READY_S = 60.0


class FlowerRunError(Exception):
    """Flower's SuperLink or `flwr run` failed; the message says how, from their output."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SuperLink:
    """Flower's SuperLink (its Fleet, Control and ServerAppIo APIs on one 127.0.0.1 port), its database and log in
    `work`; files the ServerApp writes to `$FLCTL_FLOWER_OUTPUT` land in `work/output`. With `simulation`, the same
    SuperLink runs the app on Flower's Simulation Engine instead (what `flwr run` does locally): the reference a
    Flower app on flctl is compared with."""

    def __init__(self, python: Path, work: Path, simulation: int = 0,
                 wrap: Callable[[list[str]], list[str]] = list, base_env: dict[str, str] | None = None) -> None:
        self.python = python
        self.work = work
        self.simulation = simulation  # > 0: Flower's Simulation Engine with this many simulated SuperNodes
        self.wrap = wrap  # confines the command line (`server_confinement`); unchanged by default
        self.base_env = base_env  # the environment Flower's processes start from (None: this process's)
        self.home = work / "flwr-home"
        self.output = work / "output"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return flower_env(self.python, self.home, {"FLCTL_FLOWER_OUTPUT": str(self.output)}, self.base_env)

    def start(self) -> None:
        """Start it and wait until its HTTP API answers; FlowerRunError with its log's tail when it does not."""
        for folder in (self.home, self.output):
            folder.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
            + (f"options.num-supernodes = {self.simulation}\n" if self.simulation else ""))
        log = open(self.work / "superlink.log", "ab")  # noqa: SIM115 - the process holds it; closed with it
        self._proc = subprocess.Popen(self.wrap(
            [str(flower_tool(self.python, "flower-superlink")), "--insecure", "--host", "127.0.0.1", "--port",
             str(self.port), "--database", str(self.work / "superlink.db"), "--disable-runtime-dependency-installation",
             *(["--simulation"] if self.simulation else [])]),
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=str(self.output), start_new_session=True)
        log.close()
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise FlowerRunError(f"Flower's SuperLink exited with code {self._proc.returncode}: "
                                     f"{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.2)
        raise FlowerRunError(f"Flower's SuperLink did not answer within {READY_S:g} s: {self.log_tail()}")

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = (self.work / "superlink.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:])

    def replay(self, call: FleetCall) -> FleetReply:
        """One site's Fleet API call, made on this SuperLink; its reply (502 when the SuperLink cannot be reached)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.request("POST", call.path, body=call.body, headers=call.headers)
            response = conn.getresponse()
            body = response.read()
            return FleetReply(call.id, response.status, body,
                              response.getheader("content-type", "application/protobuf"))
        except OSError as exc:
            return FleetReply(call.id, 502, f"flctl could not reach the SuperLink: {exc}".encode(), "text/plain")
        finally:
            conn.close()

    def stop(self) -> None:
        if self._proc is not None:
            stop_tree(self._proc)
            self._proc = None


class FlwrRun:
    """`flwr run APP flctl --stream`: the app's run on the SuperLink, its output as lines (`lines`)."""

    def __init__(self, link: SuperLink, app: Path, run_config: list[str]) -> None:
        command = [str(flower_tool(link.python, "flwr")), "run", str(app), CONNECTION, "--stream"]
        for item in run_config:
            command += ["--run-config", item]
        self._proc = subprocess.Popen(link.wrap(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      env=link.env(), cwd=str(link.work), start_new_session=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip())
        self._lines.put(None)

    def lines(self, wait_s: float) -> Iterator[str | None]:
        """The lines written since, waiting up to `wait_s` for the first; None once the output has ended."""
        try:
            yield self._lines.get(timeout=wait_s)
        except queue.Empty:
            return
        while True:
            try:
                yield self._lines.get_nowait()
            except queue.Empty:
                return

    def wait(self) -> int:
        return self._proc.wait()

    def stop(self) -> None:
        if self._proc.poll() is None:
            stop_tree(self._proc)
