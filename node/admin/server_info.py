"""Ask the server its clock and versions (`Federation.ServerInfo`) with any participant's kit: a site's, the
server's own or an admin's. `flctl preflight` measures clock skew and compares versions from this."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from flctl.node.admin.admin_client import translate
from flctl.node.config.kit import NodeKit
from flctl.node.errors import ConnectionFailed, NodeError
from flctl.node.security.tls import CHUNK, WINDOW_MB
from flctl.node.transport.channel import site_channel
from flctl.node.wire.proto import flctl_pb2 as pb
from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc


class NotReported(NodeError):
    """The server is an older flctl, without `ServerInfo`."""


@dataclass(frozen=True)
class ServerInfo:
    """The server's answer, with this machine's clock when the call was sent and when the answer came."""

    server_time: float
    flctl_version: str
    python_version: str
    project: str
    sent: float
    received: float

    @property
    def skew_s(self) -> float:
        """The server's clock minus this machine's, taking the answer as made halfway through the round trip."""
        return self.server_time - (self.sent + self.received) / 2

    @property
    def uncertainty_s(self) -> float:
        """How far `skew_s` can be off: half the round trip."""
        return (self.received - self.sent) / 2


def ask_server_info(kit: NodeKit, timeout_s: float = 5.0, transport: str = "grpc") -> ServerInfo:
    """One call over a fresh mTLS channel (connected first, so the round trip holds no handshake), on a site's
    `transport` (grpc or wss); a NodeError (ConnectionFailed, TimedOut…) says why it could not be asked."""
    with site_channel(kit, WINDOW_MB * CHUNK, transport) as chan:
        stub = pb_grpc.FederationStub(chan)  # type: ignore[no-untyped-call]  # generated, unannotated
        try:
            grpc.channel_ready_future(chan).result(timeout=timeout_s)
            sent = time.time()
            reply = stub.ServerInfo(pb.Empty(), timeout=timeout_s)
            received = time.time()
        except grpc.FutureTimeoutError:
            raise ConnectionFailed(f"cannot connect to the server at {kit.target} within {timeout_s:g} s") from None
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise NotReported(f"the server at {kit.target} runs an older flctl that does not report its clock "
                                  "and versions") from None
            raise translate(exc, kit.target, kit) from None
    return ServerInfo(reply.time, reply.flctl_version, reply.python_version, reply.project, sent, received)
