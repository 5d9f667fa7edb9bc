"""What every link between two of flctl's own processes shares: a typed message, one decoder, one refusal.

A link (the server daemon and a job process, the simulator and its workers, a daemon and its
spare job process) has its messages defined once, in the module of that link, as frozen
`LinkMessage` models whose `kind` names them. `Link.encode` turns one into a line of JSON;
`Link.decode` validates what arrived and returns the typed message, or raises `LinkError` naming
the link and what is wrong. An end that gets a `LinkError` logs it (`Link.refuse`) and refuses the
message: it never acts on it, never ignores it silently and never dies of it.
"""

from __future__ import annotations

import logging
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from flctl.node.errors import NodeError

_SHOWN = 200
"""How much of a refused message its error quotes."""


class LinkError(NodeError, ValueError):
    """A message on `link` that its receiver refuses: not JSON, an unknown kind, a missing or mistyped field.

    A ValueError too, as `json.loads` raised where such messages were read before."""

    def __init__(self, link: str, reason: str) -> None:
        self.link = link
        self.reason = reason
        super().__init__(f"{link}: refused a message: {reason}")


class LinkMessage(BaseModel):
    """A message between two of flctl's processes: immutable, strict, and nothing but its fields. A float that is
    NaN or infinite (a diverged loss in a site's metrics) travels as itself (`NaN`, `Infinity`): pydantic would
    write it as null, which the other end then refuses as no number, and the message, a site's answer, is lost."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, ser_json_inf_nan="constants")


M = TypeVar("M")


class Link(Generic[M]):
    """One direction of a link: `messages` (a model, or a union of models told apart by `kind`) under `name`."""

    def __init__(self, name: str, messages: Any) -> None:
        self.name = name
        self._adapter: TypeAdapter[M] = TypeAdapter(messages)

    def encode(self, message: M) -> bytes:
        """`message` as one line of JSON (ending in a newline), written by its own model (a union's adapter would
        write a NaN as null, whatever the model's config says)."""
        if isinstance(message, BaseModel):
            return message.model_dump_json().encode() + b"\n"
        return self._adapter.dump_json(message) + b"\n"

    def decode(self, data: str | bytes) -> M:
        """The message `data` holds (one line of JSON), validated; `LinkError` says what is wrong with it."""
        try:
            return self._adapter.validate_json(data)
        except ValidationError as exc:
            raise LinkError(self.name, f"{_reasons(exc)} in {_quote(data)}") from None

    def refuse(self, error: LinkError, log: logging.Logger) -> None:
        """Log a refused message (its link and why) on `log`."""
        log.warning("%s", error)


def _reasons(exc: ValidationError) -> str:
    reasons = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "json_invalid":
            reasons.append("not JSON")
        elif kind == "union_tag_invalid":
            context = error.get("ctx", {})
            reasons.append(f"unknown kind {context.get('tag')!r} (expected {context.get('expected_tags')})")
        elif kind == "union_tag_not_found":
            reasons.append("no 'kind'")
        else:
            reasons.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(reasons)


def _quote(data: str | bytes) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\n")
    return repr(text[:_SHOWN] + "…" if len(text) > _SHOWN else text)
