"""A site's side of a Flower app: the job's script (`python -m flctl.node.flower.supernode_relay`), run by the
site's job process like any training script (confined, its output the job's log at the site).

It serves a local Fleet API endpoint on 127.0.0.1 and starts Flower's own SuperNode (from the Flower venv,
`flower_python`) pointed at it. Each `flower_fleet` task brings the SuperLink's replies to the SuperNode's
calls so far; the answer carries the calls made since, as soon as there is one (or after `LONG_POLL_S` with none),
so the server always holds one open task per site and a call waits one round trip over flctl's channel.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flctl.node.flower.fleet_calls import FLEET_PATH, FleetCall, FleetReply, decode_replies, encode_calls
from flctl.node.flower.flower_python import FlowerMissing, flower_env, flower_python, flower_tool
from flctl.node.flower.process_tree import die_with_parent, stop_group
from flctl.node.flower.superlink_runner import free_port

LONG_POLL_S = 1.0
"""How long a site's answer waits for a SuperNode call before going out empty."""
BATCH_S = 0.002
"""After the first call, how long more calls (a heartbeat beside a pull) may join the same answer."""
CALL_TIMEOUT_S = 300.0
"""How long a SuperNode call waits for the SuperLink's reply before it fails with 504."""


class LocalFleet:
    """The Fleet API endpoint the SuperNode talks to: each POST becomes a `FleetCall` waiting for its reply."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[FleetCall] = []
        self._replies: dict[int, FleetReply] = {}
        self._next_id = 0
        self._closed = False
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server's name for it
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if not FLEET_PATH.fullmatch(self.path):
                    self._answer(FleetReply(-1, 404, b"not a Fleet API path", "text/plain"))
                    return
                self._answer(fleet.call(self.path, body, dict(self.headers.items())))

            def _answer(self, reply: FleetReply) -> None:
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the SuperLink logs each call; the site's job log need not repeat them

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call(self, path: str, body: bytes, headers: dict[str, str]) -> FleetReply:
        """Queue one call and wait for its reply (504 after CALL_TIMEOUT_S, 503 once closed)."""
        with self._cond:
            if self._closed:
                return FleetReply(-1, 503, b"the flctl job has ended", "text/plain")
            call_id = self._next_id
            self._next_id += 1
            self._pending.append(FleetCall(call_id, path, body, headers))
            self._cond.notify_all()
            deadline = time.monotonic() + CALL_TIMEOUT_S
            while call_id not in self._replies and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return FleetReply(call_id, 504, b"no reply from the flctl server in time", "text/plain")
                self._cond.wait(left)
            return self._replies.pop(call_id, FleetReply(call_id, 503, b"the flctl job has ended", "text/plain"))

    def take(self, wait_s: float) -> list[FleetCall]:
        """The calls waiting to go to the server: as soon as there is one (and what joins it within BATCH_S), or
        none after `wait_s`."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._pending) or self._closed, wait_s)
        if self._pending:
            time.sleep(BATCH_S)
        with self._cond:
            calls, self._pending = self._pending, []
        return calls

    def deliver(self, replies: list[FleetReply]) -> None:
        with self._cond:
            for reply in replies:
                self._replies[reply.id] = reply
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


def start_supernode(python: Path, fleet_port: int, node_config: str, home: Path) -> subprocess.Popen[bytes]:
    """Flower's SuperNode, leading a process group of its own (its children join it; `stop_group` ends them all) and
    ended by the kernel should this script die first; its output on this script's (the job's log at the site)."""
    home.mkdir(parents=True, exist_ok=True)
    command = [str(flower_tool(python, "flower-supernode")), "--insecure", "--superlink", f"127.0.0.1:{fleet_port}",
               "--port", str(free_port()), "--node-config", node_config]
    return subprocess.Popen(command, env=flower_env(python, home), cwd=str(home.parent), process_group=0,
                            preexec_fn=die_with_parent)  # noqa: PLW1509 - the child only calls prctl


def serve() -> int:
    """Relay the server's tasks to the SuperNode until the job ends; the exit code."""
    import flctl.client as api

    try:
        python = flower_python()
    except FlowerMissing as exc:
        print(f"flctl: {exc}", file=sys.stderr, flush=True)
        return 2
    fleet = LocalFleet()
    fleet.start()
    supernode: subprocess.Popen[bytes] | None = None
    try:
        while api.running():
            task = api.receive()
            if task is None:
                break
            if supernode is None:
                config = str(task.meta.get("node_config", ""))
                try:
                    supernode = start_supernode(python, fleet.port, config, Path.cwd() / "flwr-home")
                except OSError as exc:
                    print(f"flctl: cannot start Flower's SuperNode from {python.parent}: {exc}; a site that confines "
                          "job scripts grants the Flower venv in its local/resources.yml data_paths", file=sys.stderr,
                          flush=True)
                    return 2
                print(f"flctl: Flower SuperNode started (pid {supernode.pid}, node config {config!r})", flush=True)
            fleet.deliver(decode_replies(task.params, task.meta))
            calls = fleet.take(LONG_POLL_S)
            params, meta = encode_calls(calls)
            if supernode.poll() is not None:
                meta["supernode_exit"] = supernode.returncode
            api.send(api.Model(params=params, meta=meta, task="flower_fleet"))
    finally:
        fleet.close()
        if supernode is not None:
            stop_group(supernode)
    return 0


def main() -> int:
    import flctl.client as api

    api.init()
    return serve()


if __name__ == "__main__":
    sys.exit(main())
