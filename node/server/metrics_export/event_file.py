"""TensorBoard event files written by hand: a TFRecord file of `Event` protobufs holding scalar summaries.

TensorBoard reads `events.out.tfevents.*` files: records framed as
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)` (little-endian), each record
an `Event` (wall_time = 1, step = 2, file_version = 3, summary = 5) whose `Summary` holds `Value`s (tag = 1,
simple_value = 2). Encoding these few fields here means the server writes event files with neither TensorFlow,
torch nor the tensorboard package installed (tests read them back with tensorboard's own reader).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import IO

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant, so a CRC of CRCs is not trivial."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """`data` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 is its two's complement, ten bytes
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _text(field: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """An `Event` with one scalar summary value."""
    summary_value = _text(1, tag) + _varint(2 << 3 | 5) + struct.pack("<f", value)
    summary = _varint(1 << 3 | 2) + _varint(len(summary_value)) + summary_value
    return (_varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
            + _varint(5 << 3 | 2) + _varint(len(summary)) + summary)


def version_event(wall_time: float) -> bytes:
    """The first `Event` of every file: which format it is written in."""
    return _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _text(3, "brain.Event:2")


class EventFileWriter:
    """One event file in `folder` (a TensorBoard run), appended to and flushed as scalars come."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self.path = folder / name
        self._file: IO[bytes] = self.path.open("ab")
        self._file.write(record(version_event(now)))
        self._file.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float) -> None:
        self._file.write(record(scalar_event(tag, value, step, wall_time)))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
