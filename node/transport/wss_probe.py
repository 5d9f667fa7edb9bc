"""Open one WebSocket to the server's tunnel, the way a site on `wss` does, and say how it went (for `flctl
preflight`): through the proxy the environment names, with the kit's certificate, then closed at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from websockets.exceptions import WebSocketException

from flctl.node.config.kit import NodeKit
from flctl.node.transport import wss_pipe, wss_problems
from flctl.node.transport.wss_tunnel import (
    client_context,
    open_websocket,
    proxy_for,
    site_auth,
    token_header,
    wss_url,
)


@dataclass(frozen=True)
class Probe:
    url: str
    proxy: str | None
    problem: str | None  # one sentence; None: the WebSocket opened

    @property
    def route(self) -> str:
        """How the site reaches the server, in words."""
        via = f" through the proxy {wss_problems.shown_proxy(self.proxy)}" if self.proxy else " (no proxy)"
        return f"{self.url}{via}"


def probe(kit: NodeKit, timeout_s: float) -> Probe:
    url = wss_url(kit)
    proxy = proxy_for(url)

    async def attempt() -> None:
        asyncio.get_running_loop().set_exception_handler(wss_pipe.quiet_proxy_eof)
        auth = site_auth(kit)
        ws = await open_websocket(url, client_context(kit, auth), proxy, timeout_s, token_header(kit, auth))
        await ws.close()

    try:
        asyncio.run(asyncio.wait_for(attempt(), timeout_s + 1))
    except (OSError, TimeoutError, WebSocketException) as exc:
        return Probe(url, proxy, wss_problems.sentence(exc, url, proxy))
    return Probe(url, proxy, None)
