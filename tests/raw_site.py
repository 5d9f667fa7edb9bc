"""A site played by a test over raw gRPC with the site's real certificate, so it can send anything.

It registers, heartbeats and drains its command stream like a site daemon (so the server keeps it
online and places jobs on it), but runs no job process: the test fetches tasks and submits results
itself, well-formed or not.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from flctl.node.config.kit import load_kit
from flctl.node.security.tls import CHANNEL_OPTIONS
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc


class RawSite:
    def __init__(self, kit: Path, heartbeat_s: float = 0.5) -> None:
        self.kit = load_kit(kit, verify=True)
        # The site's own TLS identity, but no client-side size limit: the server's limits are under test.
        creds = grpc.ssl_channel_credentials(root_certificates=self.kit.ca_pem, private_key=self.kit.key_pem,
                                             certificate_chain=self.kit.cert_pem)
        options = [*CHANNEL_OPTIONS, ("grpc.max_send_message_length", 64 * 1024 * 1024)]
        self._channel = grpc.secure_channel(self.kit.target, creds, options=options)
        self.stub = pb_grpc.FederationStub(self._channel)
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._commands: Any = None
        self.commands: list[pb.Command] = []

    def __enter__(self) -> RawSite:
        self.stub.Register(pb.RegisterRequest(version="1"), timeout=10)
        self._commands = self.stub.Commands(pb.Empty())
        threading.Thread(target=self._drain, daemon=True, name="raw-site-commands").start()
        threading.Thread(target=self._beat, daemon=True, name="raw-site-heartbeat").start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._commands is not None:
            self._commands.cancel()
        self._channel.close()

    def _drain(self) -> None:
        assert self._commands is not None
        with contextlib.suppress(grpc.RpcError):
            for command in self._commands:
                self.commands.append(command)

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            with contextlib.suppress(grpc.RpcError, ValueError):
                self.stub.Heartbeat(pb.HeartbeatRequest(), timeout=10)

    def fetch_task(self, job_id: str, last_task_id: str = "") -> tuple[pb.TaskHeader, bytes]:
        """The next task of this site (header and payload); an empty header after the server's long poll."""
        header, data = pb.TaskHeader(), bytearray()
        for message in self.stub.FetchTask(pb.TaskRequest(job_id=job_id, last_task_id=last_task_id), timeout=60):
            if message.HasField("header"):
                header = message.header
            else:
                data += message.chunk
        return header, bytes(data)

    def next_task(self, job_id: str, last_task_id: str = "") -> tuple[pb.TaskHeader, bytes]:
        """Poll until the server hands out a task after `last_task_id` (or says the job is done). A job the task board
        does not know yet ("UNKNOWN": submitted, not yet started; a real site polls only once told to start it) is
        polled again, for up to a minute."""
        deadline = time.monotonic() + 60
        while True:
            header, data = self.fetch_task(job_id, last_task_id)
            if header.done and header.status == "UNKNOWN" and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if header.task_id or header.done:
                return header, data

    def submit(self, header: pb.ResultHeader | None, chunks: Sequence[bytes] = ()) -> pb.Ack:
        """SubmitResult with exactly these messages (no header when `header` is None); raises grpc.RpcError."""

        def messages() -> Iterator[pb.ResultMessage]:
            if header is not None:
                yield pb.ResultMessage(header=header)
            for chunk in chunks:
                yield pb.ResultMessage(chunk=chunk)

        ack: pb.Ack = self.stub.SubmitResult(messages(), timeout=30)
        return ack
