"""The site's end of the `wss` transport: a private socket that gRPC dials, each connection to it carried to the
server inside a WebSocket on HTTPS, through the site's HTTP proxy where it has one.

gRPC keeps doing all it does over TCP (mutual TLS with the kit's certificate, the same messages, chunked streams,
keepalives, reconnects): it dials `unix:<socket>` instead of `host:port` and checks the server's certificate
against the server's name as before. The WebSocket's own TLS also presents the site's certificate, so the
server's WebSocket port opens a tunnel only for a participant of the project. The socket is a Unix socket in a
folder only this user can open, so no other local user can borrow the tunnel.

The proxy is the one the environment names for `https` (`HTTPS_PROXY`, `https_proxy`, honouring `NO_PROXY`), as
curl and pip read it; `http://USER:PASSWORD@HOST:PORT` sends Basic proxy authentication.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from flctl.node.config.kit import NodeKit
from flctl.node.transport import wss_pipe, wss_problems

log = logging.getLogger("flctl.site")
OPEN_TIMEOUT_S = 10.0


def client_context(kit: NodeKit, auth: str = "certificate") -> ssl.SSLContext:
    """TLS to the server's WebSocket port: the project CA's server certificate for the name dialled, and the
    kit's own certificate presented. With `auth` "token" (a proxy that inspects TLS): the certificate of the name
    dialled from the project CA or this machine's trusted CAs (the proxy's), and none presented."""
    if auth == "token":
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.load_verify_locations(cadata=kit.ca_pem.decode())
        return context
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=kit.ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads files only
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(kit.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(kit.key_pem)
        context.load_cert_chain(cert, key)
    return context


def wss_url(kit: NodeKit) -> str:
    config = kit.info.config
    port = getattr(config, "wss_port", None)
    return f"wss://{kit.info.server_host}:{port}{wss_pipe.PATH}"


def proxy_for(url: str) -> str | None:
    """The HTTP proxy the environment names for `url` (None: connect directly)."""
    return get_proxy(parse_uri(url))


def site_auth(kit: NodeKit) -> str:
    """How this site authenticates its WebSockets: "certificate" (the default) or "token" (`wss_auth`)."""
    from flctl.node.config.resources import load_resources, resources_path

    return load_resources(resources_path(kit.root)).wss_auth


def token_header(kit: NodeKit, auth: str) -> dict[str, str]:
    """The site token's header when `auth` is "token" (a fresh token each time), else none."""
    if auth != "token":
        return {}
    from flctl.node.transport.wss_token import HEADER, make_token

    return {HEADER: make_token(kit.cert_pem, kit.key_pem, kit.info.name, kit.info.server_host, wss_pipe.PATH)}


async def open_websocket(url: str, context: ssl.SSLContext, proxy: str | None,
                         timeout_s: float = OPEN_TIMEOUT_S, headers: dict[str, str] | None = None
                         ) -> ClientConnection:
    """A WebSocket to the server's tunnel (the caller closes it); raises what `wss_problems.sentence` explains."""
    return await connect(url, ssl=context, proxy=proxy, open_timeout=timeout_s, user_agent_header="flctl",
                         additional_headers=headers, **wss_pipe.SETTINGS)  # type: ignore[arg-type]


class WssTunnel:
    """A Unix socket in a private folder; each connection to it becomes one WebSocket to the server."""

    def __init__(self, kit: NodeKit) -> None:
        self.url = wss_url(kit)
        self.proxy = proxy_for(self.url)
        self._kit = kit
        self._auth = site_auth(kit)
        self._context = client_context(kit, self._auth)
        self._folder = Path(tempfile.mkdtemp(prefix="flctl-wss-"))  # mode 0700
        atexit.register(shutil.rmtree, self._folder, True)
        self.socket_path = self._folder / "grpc.sock"
        self._loop = asyncio.new_event_loop()
        self._last_problem = ""
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True, name="wss-tunnel")
        self._thread.start()
        started.wait()
        via = f" through the proxy {wss_problems.shown_proxy(self.proxy)}" if self.proxy else ""
        log.info("transport wss: gRPC to the server goes inside a WebSocket to %s%s", self.url, via)

    @property
    def target(self) -> str:
        """The address gRPC dials."""
        return f"unix:{self.socket_path}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(wss_pipe.quiet_proxy_eof)

        async def listen() -> asyncio.Server:
            return await asyncio.start_unix_server(self._carry, path=str(self.socket_path), limit=wss_pipe.READ_LIMIT)

        self._server = self._loop.run_until_complete(listen())
        started.set()
        self._loop.run_forever()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ws = await open_websocket(self.url, self._context, self.proxy,
                                      headers=token_header(self._kit, self._auth))
        except (OSError, TimeoutError, WebSocketException) as exc:  # one sentence in the log; gRPC sees it close
            problem = wss_problems.sentence(exc, self.url, self.proxy)
            if problem != self._last_problem:  # once per new problem, not at every retry
                log.warning("cannot open the WebSocket to the server: %s", problem)
            self._last_problem = problem
            writer.close()
            return
        if self._last_problem:
            log.info("the WebSocket to the server opened again")
            self._last_problem = ""
        await wss_pipe.pipe(ws, reader, writer)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        shutil.rmtree(self._folder, ignore_errors=True)
