"""The protocol between a training script (`node.api`) and its site job process (`node.script_bridge`).

Both ends hold one `multiprocessing.connection` over a unix socket, authenticated by a random key,
and exchange only bytes (`send_bytes`/`recv_bytes`): nothing either side sends is ever unpickled.
One message is one frame: a 4-byte big-endian header length, a UTF-8 JSON object (the header, whose
`type` names the message), then the payload (safetensors bytes for params, or nothing).

    script                              site job process
    Hello(version)           ─────▶
    Ask()                    ─────▶     (the script wants its next task)
                             ◀─────     Assign(task_id, name, round, meta) + params   or   End()
    Log(name, value, step)   ─────▶     (any time after Hello)
    Result(task_id, …) + params ──▶

`End` may also come unasked (the job ended for this site): it answers the script's next `Ask`.
This module is pure (no I/O) and imports only the standard library, so `import node.api` stays fast.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROTOCOL_VERSION = 1

ADDRESS_ENV = "FLCTL_API_ADDRESS"
"""The unix socket path the script connects to."""
AUTHKEY_ENV = "FLCTL_API_AUTHKEY"
"""The connection's authentication key, in hex."""
SITE_ENV = "FLCTL_SITE"
JOB_ID_ENV = "FLCTL_JOB_ID"

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
    name: str
    round: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_header(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "name": self.name, "round": self.round, "meta": self.meta}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Assign:
        return cls(task_id=_int(header, "task_id"), name=_str(header, "name"), round=_int(header, "round"),
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


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: header length, JSON header, payload."""
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        what = header.get("type", "a message")
        raise WireError(f"cannot send {what!r}: {exc} (only JSON values can travel)") from None
    data = text.encode("utf-8")
    return _LENGTH.pack(len(data)) + data + payload


def unpack(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """The header (a JSON object) and payload of one frame."""
    if len(frame) < _LENGTH.size:
        raise WireError(f"frame of {len(frame)} bytes is shorter than its length prefix")
    (length,) = _LENGTH.unpack_from(frame)
    end = _LENGTH.size + length
    if end > len(frame):
        raise WireError(f"header length {length} runs past the end of a {len(frame)}-byte frame")
    try:
        header = json.loads(frame[_LENGTH.size:end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header must be a JSON object, not {type(header).__name__}")
    return header, frame[end:]


def encode(message: Message, payload: bytes = b"") -> bytes:
    """A message (and its payload) as one frame."""
    return pack({"type": message.kind, **message.to_header()}, payload)


def decode(frame: bytes) -> tuple[Message, bytes]:
    """The message of one frame and its payload; `WireError` names what is wrong."""
    header, payload = unpack(frame)
    kind = header.get("type")
    cls = _MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown message type {kind!r}")
    return cls.from_header(header), payload


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
