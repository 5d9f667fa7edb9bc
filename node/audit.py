"""A tamper-evident audit log: JSON lines, each record carrying the hash of the one before.

    {"seq": 7, "time": ..., "actor": ..., "action": ..., ..., "prev": "<hash of record 6>", "hash": "<this record>"}

`hash` is the SHA-256 of the record's canonical JSON without `hash`. Changing a record breaks
its own hash; removing or inserting one breaks the next record's `prev` (and the `seq` run).
`verify` names the first record that does not fit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


class AuditLog:
    """Append-only; safe across threads and, with flock, across processes sharing the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, actor: str, action: str, **fields: Any) -> dict[str, Any]:
        with self._lock, open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                seq, prev = _last(handle)
                record: dict[str, Any] = {"seq": seq + 1, "time": time.time(), "actor": actor, "action": action,
                                          **fields, "prev": prev}
                record["hash"] = record_hash(record)
                end = handle.seek(0, os.SEEK_END)
                _append(handle.fileno(), end, _canonical(record) + b"\n")
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return record


def _append(fd: int, end: int, data: bytes) -> None:
    """Write `data` at the end (the file is open for appending) and sync; if that fails (say, the disk is full),
    cut the file back to `end`, so no half record is left to break the chain."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, end)
        raise


def _last(handle: Any) -> tuple[int, str]:
    """(seq, hash) of the last record, reading only the file's tail."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return 0, GENESIS
    block = min(size, 65536)
    while True:
        handle.seek(size - block)
        lines = handle.read(block).rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or block == size:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["hash"])
        block = min(size, block * 4)


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    records: int
    problem: str = ""
    line: int = 0


def verify(path: Path) -> AuditVerdict:
    """Check every record's hash and chain; name the first record that was changed, removed or inserted."""
    prev, seq, count = GENESIS, 0, 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                return AuditVerdict(False, count, f"line {line_no} is empty (a record was removed or cut)", line_no)
            try:
                record = json.loads(raw)
            except ValueError:
                return AuditVerdict(False, count, f"line {line_no} is not JSON (the record was changed)", line_no)
            if not isinstance(record, dict) or "hash" not in record:
                return AuditVerdict(False, count, f"line {line_no} is not an audit record", line_no)
            if record.get("hash") != record_hash(record):
                return AuditVerdict(False, count, f"record {record.get('seq')} (line {line_no}) was changed: "
                                                  "its hash does not match its content", line_no)
            if record.get("prev") != prev or record.get("seq") != seq + 1:
                what = ("a record before it was removed" if isinstance(record.get("seq"), int)
                        and record["seq"] > seq + 1 else "it was inserted or a record before it was changed")
                return AuditVerdict(False, count, f"record {record.get('seq')} (line {line_no}) does not follow "
                                                  f"record {seq}: {what}", line_no)
            prev, seq, count = record["hash"], record["seq"], count + 1
    return AuditVerdict(True, count)


def read(path: Path, last: int = 0) -> list[dict[str, Any]]:
    with open(path, "rb") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return records[-last:] if last else records


def follow(path: Path, poll_s: float = 0.25) -> Iterator[dict[str, Any]]:
    """New records as they are appended (a file tail: the log is a local file)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        buffer = b""
        while True:
            chunk = handle.readline()
            if not chunk:
                time.sleep(poll_s)
                continue
            buffer += chunk
            if buffer.endswith(b"\n"):
                yield json.loads(buffer)
                buffer = b""
