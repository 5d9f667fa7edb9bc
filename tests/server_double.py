"""A Federation server played by a test, in-process, with the real server kit's certificate, so it can send a real
site daemon anything (the other way round from `tests/raw_site.py`).

It accepts the site's registration and heartbeats, sends the commands the test queues, serves the bundles the test
gives it by job id, and records what the site reports.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from flctl.node.config.kit import load_kit
from flctl.node.security.tls import SERVER_OPTIONS, server_credentials
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc


class ServerDouble(pb_grpc.FederationServicer):
    def __init__(self, server_kit: Path, port: int) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(16), options=SERVER_OPTIONS)
        pb_grpc.add_FederationServicer_to_server(self, self._server)
        self._server.add_secure_port(f"127.0.0.1:{port}", server_credentials(load_kit(server_kit, verify=True)))
        self._commands: queue.Queue[pb.Command] = queue.Queue()
        self.bundles: dict[str, bytes] = {}
        self.reports: list[pb.ReportRequest] = []
        self._changed = threading.Condition()
        self.registered = threading.Event()
        self._stopping = threading.Event()

    def __enter__(self) -> ServerDouble:
        self._server.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping.set()
        self._server.stop(0)

    def send(self, start: pb.StartJob, bundle: bytes | None = None) -> None:
        """Serve `bundle` as job `start.job_id`'s and tell the site to start it."""
        if bundle is not None:
            self.bundles[start.job_id] = bundle
        self._commands.put(pb.Command(start=start))

    def failure_of(self, job_id: str, timeout: float = 60) -> str:
        """The error the site reports for `job_id` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for report in self.reports:
                    if report.job_id == job_id and report.status == "failed":
                        return str(report.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the site reported no failure of job {job_id!r}: {self.reports}")
                self._changed.wait(left)

    # ------------------------------------------------------------------ the Federation service
    def Register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterReply:
        self.registered.set()
        return pb.RegisterReply(project="double", heartbeat_interval_s=0.5)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatReply:
        return pb.HeartbeatReply()

    def Commands(self, request: pb.Empty, context: Any) -> Iterator[pb.Command]:
        while context.is_active() and not self._stopping.is_set():
            try:
                yield self._commands.get(timeout=0.2)
            except queue.Empty:
                continue

    def FetchBundle(self, request: pb.JobRef, context: Any) -> Iterator[pb.Chunk]:
        if request.job_id not in self.bundles:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        yield pb.Chunk(data=self.bundles[request.job_id])

    def Report(self, request: pb.ReportRequest, context: Any) -> pb.Ack:
        with self._changed:
            self.reports.append(request)
            self._changed.notify_all()
        return pb.Ack()
