"""The server's end of the `wss` transport: a WebSocket-over-HTTPS port whose every connection is carried, byte
for byte, to the server's own gRPC port on this machine.

The WebSocket's TLS asks for a client certificate issued by the project CA (mutual TLS, as on the gRPC port), so
only a participant of the project opens a tunnel; inside it, gRPC's own mutual TLS runs end to end between the
site and the gRPC server, which takes the caller's identity from that certificate exactly as for a site on
grpc (revocation included). Only `wss_pipe.PATH` is served; any other request is answered 404.

With `token_auth` (the server's `wss_token_auth: true`, off by default) a WebSocket without a client certificate
is let in when it carries a valid site token (`wss_token`), for sites behind a proxy that inspects TLS; the inner
gRPC mutual TLS is unchanged, so the token decides only who may open a tunnel.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from flctl.node.config.kit import NodeKit
from flctl.node.errors import NodeError
from flctl.node.transport import wss_pipe
from flctl.node.transport.wss_token import HEADER, TokenRefused, check_token

log = logging.getLogger("flctl.server")
_LOCAL = {"", "0.0.0.0", "::", "[::]"}


def server_context(kit: NodeKit, tls_min_version: str = "1.2", token_auth: bool = False) -> ssl.SSLContext:
    """TLS of the WebSocket port: the server's certificate, and a client certificate from the project CA required
    (with `token_auth`: checked when one is sent, and a site token asked for when none is)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=kit.ca_pem.decode())
    context.verify_mode = ssl.CERT_OPTIONAL if token_auth else ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads files only
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(kit.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(kit.key_pem)
        context.load_cert_chain(cert, key)
    return context


class WssListener:
    """Listen on `host:port` for WebSockets and carry each to the gRPC port `grpc_host:grpc_port`."""

    def __init__(self, kit: NodeKit, host: str, port: int, grpc_host: str, grpc_port: int,
                 tls_min_version: str = "1.2", token_auth: bool = False,
                 revoked: Callable[[int], bool] = lambda _serial: False) -> None:
        self.address = f"{host}:{port}"
        self._grpc = ("127.0.0.1" if grpc_host in _LOCAL else grpc_host, grpc_port)
        self._context = server_context(kit, tls_min_version, token_auth)
        self._ca = x509.load_pem_x509_certificate(kit.ca_pem)
        self._name = kit.info.name
        self._revoked = revoked
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._error: BaseException | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port, started), daemon=True, name="wss-listen")
        self._thread.start()
        started.wait()
        if self._error is not None:
            raise NodeError(f"cannot listen for WebSockets on {self.address} ({self._error}); is another server "
                            "running there?")

    def _run(self, host: str, port: int, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._open(host, port))
        except OSError as exc:
            self._error = exc
            started.set()
            return
        started.set()
        self._loop.run_forever()

    async def _open(self, host: str, port: int) -> Server:
        return await serve(self._carry, host or None, port, ssl=self._context, process_request=self._admit,
                           server_header=None, **wss_pipe.SETTINGS)  # type: ignore[arg-type]

    async def _carry(self, ws: ServerConnection) -> None:
        try:
            reader, writer = await asyncio.open_connection(*self._grpc, limit=wss_pipe.READ_LIMIT)
        except OSError as exc:
            log.warning("a WebSocket tunnel found the gRPC port %s:%d closed (%s)", *self._grpc, exc)
            await ws.close(1011, "the server's gRPC port is closed")
            return
        await wss_pipe.pipe(ws, reader, writer)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()  # also closes the open tunnels: their sites reconnect

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        """None to open the tunnel: the tunnel's path, and a client certificate TLS verified or a valid token."""
        if request.path != wss_pipe.PATH:
            return ws.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        if ws.transport.get_extra_info("peercert"):  # verified against the project CA by the handshake
            return None
        token = request.headers.get(HEADER)  # reached only with token_auth: CERT_REQUIRED ends the handshake first
        if not token:
            return ws.respond(http.HTTPStatus.UNAUTHORIZED, "a client certificate or a site token is required\n")
        try:
            site = check_token(token, self._ca, self._name, wss_pipe.PATH, self._revoked)
        except TokenRefused as exc:
            log.warning("a WebSocket with a site token was refused: %s", exc)
            return ws.respond(http.HTTPStatus.FORBIDDEN, f"{exc}\n")
        log.debug("a WebSocket tunnel for site %s opened with a token", site)
        return None
