"""`failover: server`: a site under a relay connects to the server itself while its relay is down.

The site's kit names its relay (`server:` in node.yml) and, with failover, the server (`failover:`). `Route` says
which one the site daemon dials now: the relay; the server once the relay failed to answer; the relay again as soon
as it answers a probe (`probe_primary`, every PROBE_S while on the server). A job the site starts while on the
server talks to the server too: the daemon writes the address into the job's folder (`CONNECT_FILE`) and the job
process reads it (`kit_for_job`). The server and relays accept the site's certificate either way (one CA); the
server runs a job naming the site directly while the site is connected to it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from flctl.node.config.kit import NodeKit

log = logging.getLogger("flctl.site")
PROBE_S = 5.0
CONNECT_FILE = "connect_to"


def with_target(kit: NodeKit, host: str, port: int) -> NodeKit:
    """`kit` dialling `host:port` instead of its node.yml's server (the TLS name checked is `host`)."""
    return dataclasses.replace(kit, info=dataclasses.replace(kit.info, server_host=host, server_port=port))


class Route:
    """Where a site daemon connects: its parent, or the server while the parent is down (with failover)."""

    def __init__(self, kit: NodeKit) -> None:
        self.primary = kit
        failover = getattr(kit.info.config, "failover", None)
        self.fallback = with_target(kit, failover.host, failover.port) if failover is not None else None
        self.kit = kit

    @property
    def on_fallback(self) -> bool:
        return self.kit is not self.primary

    def failed(self) -> None:
        """The connection through `kit` failed: with failover, try the other one next."""
        if self.fallback is None:
            return
        self.kit = self.primary if self.on_fallback else self.fallback
        if self.on_fallback:
            log.warning("relay %s unreachable: connecting to the server %s meanwhile (failover: server)",
                        self.primary.target, self.kit.target)

    def back(self) -> None:
        self.kit = self.primary

    def probe_primary(self, connected: threading.Event, stop: threading.Event, end_session: Callable[[], None],
                      ) -> None:
        """While on the server: every PROBE_S ask the relay for ServerInfo; once it answers, go back to it (the
        session on the server is ended, and the next one dials the relay)."""
        import grpc

        from flctl.node.security.tls import channel
        from flctl.node.wire.proto import flctl_pb2 as pb
        from flctl.node.wire.proto import flctl_pb2_grpc as pb_grpc

        while connected.is_set() and not stop.wait(PROBE_S) and self.on_fallback:
            try:
                with channel(self.primary) as chan:
                    pb_grpc.FederationStub(chan).ServerInfo(pb.Empty(), timeout=3)  # type: ignore[no-untyped-call]
            except grpc.RpcError:
                continue
            log.info("relay %s answers again: going back to it", self.primary.target)
            self.back()
            end_session()
            return

    def mark_job(self, job_dir: Path) -> None:
        """Tell a job about to start in `job_dir` where to connect: the server while on failover, else its kit's."""
        path = job_dir / CONNECT_FILE
        if self.on_fallback:
            path.write_text(self.kit.target)
        else:
            path.unlink(missing_ok=True)


def kit_for_job(kit: NodeKit, job_dir: Path) -> NodeKit:
    """The kit a site's job process dials with: its own, or the server's address its daemon left for it."""
    try:
        host, _, port = (job_dir / CONNECT_FILE).read_text().strip().rpartition(":")
    except OSError:
        return kit
    if not host or not port.isdigit():
        return kit
    failover = getattr(kit.info.config, "failover", None)
    if failover is None or (host, int(port)) != (failover.host, failover.port):
        return kit  # only the address the kit itself names may be dialled instead
    return with_target(kit, host, int(port))
