"""A model's chunks on the wire without protobuf's copies.

`TaskMessage` and `ResultMessage` each hold a header or one `bytes chunk` (field 2). Through
the generated code a 1 MiB chunk is copied three times on the way out (into a `bytes`, into
the message, into its serialization) and twice on the way in (into the parsed message, out
to a `bytes`). Here a chunk message is written in one copy (`encode`) and read as a view into
the bytes gRPC delivered (`decoder`): the same bytes protobuf writes and reads, so a peer
using the generated code reads and writes them unchanged. Headers still go through protobuf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

CHUNK_TAG = 0x12
"""Field 2, length-delimited: the tag of `chunk` in `TaskMessage` and `ResultMessage`."""
_MAX_VARINT = 10


class _Message(Protocol):
    def SerializeToString(self) -> bytes: ...


class RawChunk:
    """A chunk message read by `decoder`: the parts of a message the servicers use (`chunk`, `HasField`)."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: memoryview) -> None:
        self.chunk = chunk

    def HasField(self, name: str) -> bool:
        return False


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(data: bytes | bytearray | memoryview) -> bytes:
    """The message whose only field is `chunk = data`, as protobuf serializes it, in one copy of `data`."""
    return b"".join((bytes((CHUNK_TAG,)), _varint(len(data)), data))


def chunk_of(raw: bytes) -> memoryview | None:
    """`raw`'s chunk as a view into `raw` when `raw` is a message holding a chunk and nothing else; None otherwise
    (a header, an empty message, anything unusual: protobuf parses those)."""
    if len(raw) < 2 or raw[0] != CHUNK_TAG:
        return None
    length = shift = 0
    for offset in range(1, min(len(raw), 1 + _MAX_VARINT)):
        byte = raw[offset]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            start = offset + 1
            return memoryview(raw)[start:] if start + length == len(raw) else None
    return None


def decoder(message_type: Any) -> Callable[[bytes], Any]:
    """A gRPC deserializer for `message_type`: a chunk message becomes a `RawChunk` (no copy), anything else is
    parsed by protobuf."""
    parse = message_type.FromString

    def decode(raw: bytes) -> Any:
        view = chunk_of(raw)
        return RawChunk(view) if view is not None else parse(raw)

    return decode


def serialize(message: _Message | bytes) -> bytes:
    """A gRPC serializer that passes what `encode` wrote as it is and serializes a message with protobuf."""
    return message if isinstance(message, bytes) else message.SerializeToString()
