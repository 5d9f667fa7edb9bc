"""The protocol between a training script (`flctl.client`) and its site job process (`script_bridge`).

Both ends hold one `multiprocessing.connection` over a unix socket, authenticated by a random key,
and exchange only bytes: nothing either side sends is ever unpickled. One message is one frame
(`send_bytes`/`recv_bytes`): a 4-byte big-endian header length, then a UTF-8 JSON object (the
header, whose `type` names the message). A message with params (`Assign`, `Result`) says how many
bytes they take (`"payload": N`), and those N bytes (safetensors) follow the frame on the socket
as they are (`send`, `read_payload`): written straight from the sender's arrays and read straight
into the receiver's, never copied into a frame.

    script                              site job process
    Hello(version)           ─────▶
    Ask()                    ─────▶     (the script wants its next task)
                             ◀─────     Assign(task_id, task_kind, round, meta) + params   or   End()
    Log(name, value, step)   ─────▶     (any time after Hello)
    Result(task_id, …) + params ──▶

`End` may also come unasked (the job ended for this site): it answers the script's next `Ask`.
This module imports only the standard library, so `import flctl.node.client.api` stays fast.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

PROTOCOL_VERSION = 1

ADDRESS_ENV = "FLCTL_API_ADDRESS"
"""The unix socket path the script connects to."""
AUTHKEY_ENV = "FLCTL_API_AUTHKEY"
"""The connection's authentication key, in hex."""
SITE_ENV = "FLCTL_SITE"
JOB_ID_ENV = "FLCTL_JOB_ID"
FRAMEWORK_ENV = "FLCTL_FRAMEWORK"
"""What the script's params are: "numpy" (arrays, the default), "pytorch" (tensors) or "keras" (arrays named by
Keras weight paths); job.yml's app.framework."""
OUTPUT_DIR_ENV = "FLCTL_OUTPUT_DIR"
"""The folder a script keeps what it writes for its site alone (an inference job's predictions): `fl.output_dir()`.
A `{site}` in it stands for the site's name (a simulation's sites share one process environment)."""

_LENGTH = struct.Struct(">I")


class WireError(ValueError):
    """A frame or message does not follow the protocol (or a header value cannot travel as JSON)."""


@dataclass(frozen=True)
class Hello:
    """The script's first message after connecting."""

    kind: ClassVar[str] = "hello"
    version: int = PROTOCOL_VERSION

    def to_header(self) -> dict[str, Any]:
        return {"version": self.version}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Hello:
        return cls(version=_int(header, "version"))


@dataclass(frozen=True)
class Ask:
    """The script is ready for its next task."""

    kind: ClassVar[str] = "ask"

    def to_header(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Ask:
        return cls()


@dataclass(frozen=True)
class Assign:
    """A task for the script; its params travel as the payload."""

    kind: ClassVar[str] = "assign"
    task_id: int
    task_kind: str
    round: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_header(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "task_kind": self.task_kind, "round": self.round, "meta": self.meta}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Assign:
        return cls(task_id=_int(header, "task_id"), task_kind=_str(header, "task_kind"), round=_int(header, "round"),
                   meta=_dict(header, "meta"))


@dataclass(frozen=True)
class End:
    """No more tasks for this script: the job has ended at this site."""

    kind: ClassVar[str] = "end"

    def to_header(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> End:
        return cls()


@dataclass(frozen=True)
class Result:
    """The script's answer to the task `task_id`; its params travel as the payload."""

    kind: ClassVar[str] = "result"
    task_id: int
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_header(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "num_examples": self.num_examples, "metrics": self.metrics,
                "meta": self.meta}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Result:
        num_examples = _int(header, "num_examples")
        if num_examples < 0:
            raise WireError(f"'num_examples' must be >= 0, not {num_examples}")
        metrics = _dict(header, "metrics")
        return cls(task_id=_int(header, "task_id"), num_examples=num_examples,
                   metrics={name: _number(metrics, name, "metrics") for name in metrics},
                   meta=_dict(header, "meta"))


@dataclass(frozen=True)
class Log:
    """One metric value the script logged, forwarded as soon as it is logged."""

    kind: ClassVar[str] = "log"
    name: str
    value: float
    step: int | None = None

    def to_header(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "step": self.step}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Log:
        step = header.get("step")
        if step is not None:
            step = _int(header, "step")
        return cls(name=_str(header, "name"), value=_number(header, "value"), step=step)


Message = Hello | Ask | Assign | End | Result | Log
_MESSAGES: dict[str, type[Message]] = {cls.kind: cls for cls in (Hello, Ask, Assign, End, Result, Log)}


Payload = bytes | bytearray | memoryview
"""A payload, or one part of it (a payload is sent in parts: a safetensors header, then each tensor)."""
_WITH_PAYLOAD = frozenset({"assign", "result"})


def pack(header: dict[str, Any]) -> bytes:
    """One frame: header length, then the JSON header."""
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        what = header.get("type", "a message")
        raise WireError(f"cannot send {what!r}: {exc} (only JSON values can travel)") from None
    data = text.encode("utf-8")
    return _LENGTH.pack(len(data)) + data


def unpack(frame: Payload) -> dict[str, Any]:
    """The header (a JSON object) of one frame."""
    if len(frame) < _LENGTH.size:
        raise WireError(f"frame of {len(frame)} bytes is shorter than its length prefix")
    (length,) = _LENGTH.unpack_from(frame)
    end = _LENGTH.size + length
    if end != len(frame):
        where = "runs past the end of" if end > len(frame) else "leaves bytes over in"
        raise WireError(f"header length {length} {where} a {len(frame)}-byte frame")
    try:
        header = json.loads(bytes(frame[_LENGTH.size:end]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header must be a JSON object, not {type(header).__name__}")
    return header


def encode(message: Message, payload_size: int = 0) -> bytes:
    """A message as one frame; `payload_size` bytes of params follow it (Assign and Result only)."""
    header = {"type": message.kind, **message.to_header()}
    if payload_size:
        header["payload"] = payload_size
    return pack(header)


def decode(frame: Payload) -> tuple[Message, int]:
    """The message of one frame and how many payload bytes follow it; `WireError` names what is wrong."""
    header = unpack(frame)
    kind = header.pop("type", None)
    cls = _MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown message type {kind!r}")
    size = header.pop("payload", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise WireError(f"'payload' must be a byte count >= 0, not {size!r}")
    if size and kind not in _WITH_PAYLOAD:
        raise WireError(f"a {kind!r} message carries no payload, but {size} bytes were announced")
    return cls.from_header(header), size


@runtime_checkable
class RawIO(Protocol):
    """A connection that moves payload bytes itself (the simulator's in-process one); a real
    `multiprocessing.connection.Connection` has its socket's file descriptor instead."""

    def send_raw(self, data: memoryview) -> None: ...

    def recv_raw_into(self, view: memoryview) -> None: ...


def send(conn: Any, message: Message, parts: Sequence[Payload] = ()) -> None:
    """Send `message` over `conn` (a `Connection`), then its payload `parts` as they are, one after another."""
    views = [memoryview(part).cast("B") for part in parts]
    conn.send_bytes(encode(message, sum(view.nbytes for view in views)))
    for part in views:
        if isinstance(conn, RawIO):
            conn.send_raw(part)
            continue
        fd, left = conn.fileno(), part
        while left.nbytes:
            left = left[os.write(fd, left):]


def read_payload(conn: Any, view: memoryview) -> None:
    """Fill `view` with the next payload bytes from `conn`; EOFError when the connection ends first."""
    view = view.cast("B")
    if isinstance(conn, RawIO):
        conn.recv_raw_into(view)
        return
    fd = conn.fileno()
    while view.nbytes:
        got = os.readv(fd, [view])
        if not got:
            raise EOFError("the connection ended inside a payload")
        view = view[got:]


def _int(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"{key!r} must be an integer, not {value!r}")
    return value


def _str(header: dict[str, Any], key: str) -> str:
    value = header.get(key)
    if not isinstance(value, str):
        raise WireError(f"{key!r} must be a string, not {value!r}")
    return value


def _dict(header: dict[str, Any], key: str) -> dict[str, Any]:
    value = header.get(key, {})
    if not isinstance(value, dict):
        raise WireError(f"{key!r} must be an object, not {value!r}")
    return value


def _number(mapping: dict[str, Any], key: str, where: str = "") -> float:
    value = mapping.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        name = f"{where}[{key!r}]" if where else repr(key)
        raise WireError(f"{name} must be a number, not {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise WireError(f"{key!r} is too large for a float") from None
