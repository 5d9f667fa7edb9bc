"""A tamper-evident audit log: JSON lines, each record carrying the hash of the one before.

    {"seq": 7, "time": ..., "actor": ..., "action": ..., ..., "prev": "<hash of record 6>", "hash": "<this record>",
     "sig": "<the node's signature of hash>"}

`hash` is the SHA-256 of the record's canonical JSON without `hash` and `sig`. Changing a record breaks
its own hash; removing or inserting one breaks the next record's `prev` (and the `seq` run).
`sig` (when the log is given the node's private key) signs `hash` with that key: recomputing the hashes
after an edit no longer helps, since verifying with the node's certificate refuses the new ones.
`verify` names the first record that does not fit.

A damaged tail (a torn write after a power loss leaves a half line, a changed byte leaves a record whose
hash does not match) is found when the log is opened and before every append. It is never mended in place:
the whole file is kept under another name (`audit.damaged-<UTC time>.jsonl`, beside it), and a new file is
started whose first record, `audit.gap`, chains to the last good record and says what was set aside and
where. `verify` follows such a record into the set-aside file, checks the records before the damage there,
and reports the gap.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

GENESIS = "0" * 64
GAP = "audit.gap"
TAIL_BLOCK = 4096
log = logging.getLogger("flctl.audit")


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k not in ("hash", "sig")})).hexdigest()


def _fault(raw: bytes) -> str:
    """Why a line is not a whole, unchanged record ('' when it is one)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return "it is not JSON (a record cut short or changed)"
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int) or "hash" not in record:
        return "it is not an audit record"
    if record["hash"] != record_hash(record):
        return "its hash does not match its content (the record was changed)"
    return ""


@dataclass(frozen=True)
class _Tail:
    """Where the last whole record ends, and what follows it."""
    seq: int
    hash: str
    good_end: int  # bytes up to and including the last good record's newline (or its end when it has none)
    size: int
    newline: bool  # the last good record ends with a newline
    fault: str  # why the first line after it is bad ('' when nothing follows)


def _scan_tail(handle: IO[bytes]) -> _Tail:
    """Find the last good record, reading backwards from the end only as far as needed."""
    size = handle.seek(0, os.SEEK_END)
    block = min(size, TAIL_BLOCK)
    while size:
        start = size - block
        handle.seek(start)
        data = handle.read(block)
        parts = data.split(b"\n")
        lines, pos = [], start
        for part in parts:
            lines.append((pos, part))
            pos += len(part) + 1
        if start > 0:
            lines = lines[1:]  # the first piece may be the end of a longer line
        fault = ""
        for line_start, raw in reversed(lines):
            last_piece = line_start + len(raw) >= size
            if not raw.strip():
                if not (last_piece and not raw):  # the empty piece after a final newline is no line
                    fault = fault or "an empty line"
                continue
            why = _fault(raw)
            if not why:
                record = json.loads(raw)
                end = line_start + len(raw) + (0 if last_piece else 1)
                return _Tail(int(record["seq"]), str(record["hash"]), end, size, not last_piece,
                             fault if end < size else "")
            fault = why
        if start == 0:
            return _Tail(0, GENESIS, 0, size, True, fault)
        block = min(size, block * 8)
    return _Tail(0, GENESIS, 0, 0, True, "")


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1000):
        aside = path.with_name(f"{path.stem}.damaged-{stamp}{f'-{n}' if n else ''}{path.suffix}")
        if not aside.exists():
            return aside
    raise OSError(f"too many set-aside audit logs named {path.stem}.damaged-{stamp}* in {path.parent}")


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """Append-only; safe across threads and, with flock, across processes sharing the file.

    With `key_pem` (the node's own private key from its kit) every record is signed. Opening the log
    checks its tail, and sets a damaged one aside (see the module's docstring); `gaps` lists the
    `audit.gap` records this object wrote, for whoever shows the operator the node's state.
    """

    def __init__(self, path: Path, key_pem: bytes | None = None, actor: str = "audit") -> None:
        self.path = path
        self.actor = actor
        self.gaps: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._key: Any = None
        if key_pem is not None:
            from flctl.provisioner import pki

            self._key = pki.load_key(key_pem)
        self.check("at start")

    def notices(self) -> list[str]:
        """One sentence for each damaged tail this object set aside, for the operator (the console shows them)."""
        with self._lock:
            return [gap_notice(gap, self.path) for gap in self.gaps]

    def check(self, when: str = "on request") -> dict[str, Any] | None:
        """Set aside a damaged tail now; the `audit.gap` record written, or None when the tail is whole."""
        with self._lock:
            handle = self._open_locked()
            try:
                tail = _scan_tail(handle)
                return self._set_aside(handle, tail, when) if tail.good_end < tail.size else None
            finally:
                handle.close()

    def append(self, actor: str, action: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            handle = self._open_locked()
            try:
                tail = _scan_tail(handle)
                if tail.good_end < tail.size:
                    self._set_aside(handle, tail, "on append")
                    handle.close()
                    handle = self._open_locked()
                    tail = _scan_tail(handle)
                record = self._sealed({"seq": tail.seq + 1, "time": time.time(), "actor": actor, "action": action,
                                       **fields, "prev": tail.hash})
                line = (b"" if tail.newline else b"\n") + _canonical(record) + b"\n"
                _append(handle.fileno(), tail.size, line)
            finally:
                handle.close()  # closing lets go of the flock
        return record

    def _sealed(self, record: dict[str, Any]) -> dict[str, Any]:
        record["hash"] = record_hash(record)
        if self._key is not None:
            from flctl.provisioner import pki

            record["sig"] = base64.b64encode(pki.sign_bytes(self._key, record["hash"].encode())).decode("ascii")
        return record

    def _open_locked(self) -> IO[bytes]:
        """The log, open for appending and locked; opened again when another process set it aside meanwhile."""
        while True:
            handle = open(self.path, "a+b")  # noqa: SIM115 - the caller closes it
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()

    def _set_aside(self, handle: IO[bytes], tail: _Tail, when: str) -> dict[str, Any]:
        """Keep the damaged file under another name and start a new one, chained to its last good record by an
        `audit.gap` record. The lock on the old file is held throughout; the log's name never goes missing."""
        handle.seek(tail.good_end)
        damaged = handle.read()
        aside = _aside_name(self.path)
        try:
            os.link(self.path, aside)
        except OSError:  # a file system without hard links: a copy, still made before the log is replaced
            shutil.copy2(self.path, aside)
        gap = self._sealed({
            "seq": tail.seq + 1, "time": time.time(), "actor": self.actor, "action": GAP, "detected": when,
            "set_aside": aside.name, "after_seq": tail.seq, "good_bytes": tail.good_end,
            "damaged_bytes": len(damaged), "damaged_lines": len(damaged.rstrip(b"\n").split(b"\n")),
            "damaged_sha256": hashlib.sha256(damaged).hexdigest(), "reason": tail.fault, "prev": tail.hash})
        fresh = self.path.with_name(self.path.name + ".new")
        with open(fresh, "wb") as out:
            out.write(_canonical(gap) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, self.path)
        _sync_dir(self.path.parent)
        self.gaps.append(gap)
        log.error("the audit log %s had a damaged tail (%d bytes after record %d: %s), found %s; it is kept as %s, "
                  "and the log goes on from record %d, chained to record %d. `flctl audit verify %s` shows the gap.",
                  self.path, len(damaged), tail.seq, tail.fault, when, aside, gap["seq"], tail.seq, self.path)
        return gap


def gap_notice(gap: dict[str, Any], path: Path) -> str:
    """What an `audit.gap` record tells an operator, in one sentence."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(gap["time"]))
    return (f"the audit log {path.name} had a damaged tail ({gap['damaged_bytes']} bytes after record "
            f"{gap['after_seq']}), found {gap['detected']} at {when}; it is kept as {gap['set_aside']} and the log "
            f"goes on, chained across the gap: `flctl audit verify {path}` shows it")


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


@dataclass(frozen=True)
class AuditGap:
    """A damaged tail that was set aside: the records after `after_seq` in `set_aside` could not be read."""
    seq: int  # the audit.gap record's own seq
    set_aside: str
    after_seq: int
    damaged_bytes: int
    damaged_lines: int
    detected: str
    reason: str

    def describe(self) -> str:
        return (f"record {self.seq} records a gap: a damaged tail of {self.damaged_lines} line(s) "
                f"({self.damaged_bytes} bytes) after record {self.after_seq} was set aside in {self.set_aside} "
                f"({self.detected}: {self.reason})")


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    records: int
    problem: str = ""
    line: int = 0
    gaps: list[AuditGap] = field(default_factory=list)
    signatures: str = "not checked"  # "checked", or "not checked" (no certificate given)


class _Broken(Exception):
    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


@dataclass
class _Walk:
    public_key: Any
    records: int = 0
    gaps: list[AuditGap] = field(default_factory=list)
    depth: int = 0


def verify(path: Path, cert_pem: bytes | None = None) -> AuditVerdict:
    """Check every record's hash and chain (and, given the node's certificate, its signature), following
    `audit.gap` records into the segments they set aside; name the first record that was changed, removed,
    inserted or (with a certificate) not signed by the node."""
    public_key = None
    if cert_pem is not None:
        from cryptography import x509

        public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    walk = _Walk(public_key)
    signatures = "checked" if public_key is not None else "not checked"
    try:
        _walk_segment(path, None, walk)
    except _Broken as exc:
        return AuditVerdict(False, walk.records, exc.problem, exc.line, walk.gaps, signatures)
    return AuditVerdict(True, walk.records, gaps=walk.gaps, signatures=signatures)


def _walk_segment(path: Path, limit: int | None, walk: _Walk) -> tuple[int, str]:
    """Check `path` (its first `limit` bytes); the (seq, hash) of its last record."""
    shown = "" if walk.depth == 0 else f" of {path.name}"
    if walk.depth > 200:
        raise _Broken(f"{path.name}: too many set-aside segments chained together", 0)
    prev, seq = GENESIS, 0
    with open(path, "rb") as handle:
        data = handle.read() if limit is None else handle.read(limit)
    for line_no, raw in enumerate(data.splitlines(keepends=True), start=1):
        if not raw.strip():
            raise _Broken(f"line {line_no}{shown} is empty (a record was removed or cut)", line_no)
        try:
            record = json.loads(raw)
        except ValueError:
            raise _Broken(f"line {line_no}{shown} is not JSON (the record was changed)", line_no) from None
        if not isinstance(record, dict) or "hash" not in record:
            raise _Broken(f"line {line_no}{shown} is not an audit record", line_no)
        where = f"record {record.get('seq')} (line {line_no}{shown})"
        if record.get("hash") != record_hash(record):
            raise _Broken(f"{where} was changed: its hash does not match its content", line_no)
        if walk.public_key is not None:
            _check_signature(record, where, line_no, walk.public_key)
        if line_no == 1 and record.get("action") == GAP and record.get("after_seq"):
            seq, prev = _follow_gap(path, record, where, line_no, walk)
        if record.get("prev") != prev or record.get("seq") != seq + 1:
            what = ("a record before it was removed" if isinstance(record.get("seq"), int)
                    and record["seq"] > seq + 1 else "it was inserted or a record before it was changed")
            raise _Broken(f"{where} does not follow record {seq}: {what}", line_no)
        if record.get("action") == GAP:
            if record.get("after_seq") == 0 and line_no == 1:
                _check_damaged(path, record, where, line_no)
            walk.gaps.append(AuditGap(int(record["seq"]), str(record.get("set_aside")), int(record["after_seq"]),
                                      int(record.get("damaged_bytes", 0)), int(record.get("damaged_lines", 0)),
                                      str(record.get("detected", "")), str(record.get("reason", ""))))
        prev, seq = record["hash"], record["seq"]
        walk.records += 1
    return seq, prev


def _check_signature(record: dict[str, Any], where: str, line_no: int, public_key: Any) -> None:
    from flctl.provisioner import pki

    sig = record.get("sig")
    if not isinstance(sig, str):
        raise _Broken(f"{where} is not signed (the node signs every record: it was written by someone else)",
                      line_no)
    try:
        raw_sig = base64.b64decode(sig, validate=True)
    except ValueError:
        raw_sig = b""
    if not pki.verify_bytes(public_key, raw_sig, str(record["hash"]).encode()):
        raise _Broken(f"{where} was changed: its signature does not match the node's certificate", line_no)


def _check_damaged(path: Path, gap: dict[str, Any], where: str, line_no: int) -> Path:
    """The set-aside file a gap names, holding the damaged bytes the gap describes."""
    aside = path.parent / str(gap.get("set_aside", ""))
    if not aside.is_file() or aside.name != gap.get("set_aside"):
        raise _Broken(f"{where} records a gap whose set-aside segment {gap.get('set_aside')} is missing "
                      f"from {path.parent} (records up to {gap.get('after_seq')} cannot be checked)", line_no)
    with open(aside, "rb") as handle:
        handle.seek(int(gap.get("good_bytes", 0)))
        damaged = handle.read()
    if hashlib.sha256(damaged).hexdigest() != gap.get("damaged_sha256"):
        raise _Broken(f"{where} records a gap, but the damaged tail of {aside.name} is not what was set aside "
                      "(the set-aside segment was changed)", line_no)
    return aside


def _follow_gap(path: Path, gap: dict[str, Any], where: str, line_no: int, walk: _Walk) -> tuple[int, str]:
    """Check the set-aside segment's records up to the damage; the (seq, hash) its last good record has."""
    aside = _check_damaged(path, gap, where, line_no)
    walk.depth += 1
    try:
        last = _walk_segment(aside, int(gap.get("good_bytes", 0)), walk)
    finally:
        walk.depth -= 1
    return last


def read(path: Path, last: int = 0) -> list[dict[str, Any]]:
    """The records of the current file (a damaged line is skipped: `verify` names it)."""
    records = []
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    return records[-last:] if last else records


def follow(path: Path, poll_s: float = 0.25) -> Iterator[dict[str, Any]]:
    """New records as they are appended (a file tail: the log is a local file); a log set aside and started
    again is followed into the new file."""
    handle = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        handle.seek(0, os.SEEK_END)
        buffer = b""
        while True:
            chunk = handle.readline()
            if not chunk:
                try:
                    replaced = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
                except FileNotFoundError:
                    replaced = False
                if replaced:
                    handle.close()
                    handle = open(path, "rb")  # noqa: SIM115
                    buffer = b""
                    continue
                time.sleep(poll_s)
                continue
            buffer += chunk
            if buffer.endswith(b"\n"):
                with contextlib.suppress(ValueError):
                    yield json.loads(buffer)
                buffer = b""
    finally:
        handle.close()
