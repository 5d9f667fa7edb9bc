"""Carry the bytes of one TCP connection inside one WebSocket, both ways, until either side ends.

Each binary message holds the next piece of the byte stream (at most `PIECE` bytes); nothing else is framed. What
travels is gRPC's own TLS connection, so the WebSocket only ever sees ciphertext. Flow control is the two
libraries' own: a read waits while the WebSocket's send buffer is full, and `max_queue` messages at most wait
unread on the other side.
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

PATH = "/flctl/v1/grpc"
"""The URL path of the tunnel on the server's WebSocket port."""
PIECE = 256 * 1024
MAX_MESSAGE = 2 * PIECE
WRITE_LIMIT = 1024 * 1024
MAX_QUEUE = 16
SETTINGS: dict[str, object] = {"compression": None, "max_size": MAX_MESSAGE, "write_limit": WRITE_LIMIT,
                               "max_queue": MAX_QUEUE}
"""Keyword arguments for both ends: ciphertext does not compress, so no permessage-deflate."""


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
