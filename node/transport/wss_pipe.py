"""Carry the bytes of one TCP connection inside one WebSocket, both ways, until either side ends.

Each binary message holds the next piece of the byte stream (at most `PIECE` bytes); nothing else is framed. What
travels is gRPC's own TLS connection, so the WebSocket only ever sees ciphertext. Flow control is the two
libraries' own: a read waits while the WebSocket's send buffer is full, and `max_queue` messages at most wait
unread on the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

PATH = "/flctl/v1/grpc"
"""The URL path of the tunnel on the server's WebSocket port."""
PIECE = 256 * 1024
READ_LIMIT = 1024 * 1024
"""How much a side reads ahead from its TCP or Unix socket before it waits for the WebSocket."""
MAX_MESSAGE = 2 * PIECE
WRITE_LIMIT = 1024 * 1024
MAX_QUEUE = 16
LIBRARY_LOG = logging.getLogger("flctl.wss")
"""The websockets library's own log (a line per connection opened and closed at INFO): warnings only."""
LIBRARY_LOG.setLevel(logging.WARNING)


SETTINGS: dict[str, object] = {"compression": None, "max_size": MAX_MESSAGE, "write_limit": WRITE_LIMIT,
                               "max_queue": MAX_QUEUE, "logger": LIBRARY_LOG}
"""Keyword arguments for both ends: ciphertext does not compress, so no permessage-deflate."""


def quiet_proxy_eof(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An event loop's exception handler: websockets (17.4) raises EOFError from its proxy handshake's
    `connection_lost` when a proxy closes before answering; the connection attempt itself reports that, so here
    it is dropped. Anything else goes to the loop's default handler."""
    if isinstance(context.get("exception"), EOFError):
        LIBRARY_LOG.debug("a proxy closed before answering: %s", context.get("message"))
        return
    loop.default_exception_handler(context)


async def pipe(ws: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` into `ws` and `ws` into `writer` until one side closes; then close both."""

    async def upward() -> None:
        while data := await reader.read(PIECE):
            await ws.send(data)

    async def downward() -> None:
        async for message in ws:
            if isinstance(message, str):  # the tunnel carries bytes only
                break
            writer.write(message)
            await writer.drain()

    tasks = [asyncio.create_task(upward()), asyncio.create_task(downward())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await task
        writer.close()
        with contextlib.suppress(ConnectionClosed, OSError):
            await ws.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
