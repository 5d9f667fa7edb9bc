"""One sentence for each way a WebSocket connection to the server can fail: what happened and what to do.

The site's log and `flctl preflight` both say these; a proxy that refuses is named with the status it answered.
"""

from __future__ import annotations

import ssl

from websockets.exceptions import (
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    ProxyError,
    WebSocketException,
)


def shown_proxy(proxy: str) -> str:
    """The proxy's URL without its password."""
    scheme, sep, rest = proxy.partition("://")
    user, at, where = rest.rpartition("@")
    return f"{scheme}{sep}{user.partition(':')[0]}@{where}" if at else proxy


def sentence(exc: BaseException, url: str, proxy: str | None) -> str:
    """Why the WebSocket to `url` (through `proxy`, if any) did not open, in one sentence."""
    through = f" through the proxy {shown_proxy(proxy)}" if proxy else ""
    target = url.split("://", 1)[-1].split("/", 1)[0]
    if isinstance(exc, InvalidProxyStatus):
        status = exc.response.status_code
        reason = exc.response.reason_phrase
        if status == 407:
            return (f"the proxy {shown_proxy(proxy or '?')} wants a user and password (407 {reason}); put them in "
                    "HTTPS_PROXY as http://USER:PASSWORD@HOST:PORT")
        if status >= 500:
            return (f"the proxy {shown_proxy(proxy or '?')} could not reach {target} ({status} {reason}); is the "
                    "server running, and may the proxy's network reach it?")
        return (f"the proxy {shown_proxy(proxy or '?')} refused to connect to {target} ({status} {reason}); ask its "
                f"operator to allow CONNECT to port {target.rpartition(':')[2]}")
    if isinstance(exc, InvalidProxyMessage) and isinstance(exc.__cause__, EOFError | OSError):
        return (f"the proxy {shown_proxy(proxy or '?')} closed the connection without answering (the network to "
                "it, or the proxy itself, cut it)")
    if isinstance(exc, InvalidProxyMessage | ProxyError):
        return f"the proxy {shown_proxy(proxy or '?')} did not answer as an HTTP proxy ({exc}); check HTTPS_PROXY"
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError | OSError):
        return (f"{target} closed the connection before answering the WebSocket request{through}; the server's "
                "WebSocket port does that to a site without a client certificate, which a proxy that inspects TLS "
                "removes (see wss_auth: token)")
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
        why = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        return (f"the server at {target} refused the WebSocket ({exc.response.status_code}: {why}); with a proxy "
                "that inspects TLS the site needs wss_auth: token and the server wss_token_auth: true")
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return (f"{target} answered HTTP {status} instead of opening a WebSocket{through}; is that the server's "
                "wss_port?")
    if isinstance(exc, ssl.SSLError):
        why = exc.reason or str(exc)
        return (f"the TLS handshake with {target}{through} failed ({why}); a proxy that inspects TLS cannot pass "
                f"a site's certificate: ask for {target} to be tunnelled (CONNECT), not inspected")
    if isinstance(exc, TimeoutError):
        return f"{target} did not answer within the time allowed{through}"
    if isinstance(exc, OSError):
        where = f"the proxy {shown_proxy(proxy)}" if proxy else target
        return f"cannot reach {where} ({exc.strerror or exc}); is it running, and does a firewall let this machine in?"
    if isinstance(exc, WebSocketException):
        return f"the WebSocket to {target}{through} failed ({exc})"
    return f"the WebSocket to {target}{through} failed ({type(exc).__name__}: {exc})"
