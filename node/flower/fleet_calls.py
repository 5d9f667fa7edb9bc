"""A SuperNode's Fleet API calls and the SuperLink's replies as flctl task params: pure encoding, no I/O.

flwr 1.42's Fleet API is protobuf over HTTP: a POST to `/v1/fleet/<method>` whose body is the serialized request,
answered with the serialized response. flctl carries both as opaque bytes (never parsed, never unpickled): each
body an uint8 array of the task's (or the answer's) params, named `c<id>`, and what else a call or reply has in its
meta. Only Fleet API paths are relayed: a site cannot reach the SuperLink's Control or ServerAppIo API through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flctl.node.jobs.tasks import Params

FLEET_PATH = re.compile(r"/v1/fleet/[a-z][a-z-]{0,63}")
"""The only paths a site's calls may name (`/v1/fleet/pull-messages`…)."""
FORWARDED_HEADERS = ("content-type", "accept")
"""Request headers replayed on the SuperLink (SuperNode authentication, when the app's SuperLink asks for it,
adds its own `flwr-`/`x-` ones, forwarded too); hop-by-hop ones and the rest are not."""


class FleetCallError(ValueError):
    """A call or a reply that does not have the shape this module writes."""


@dataclass(frozen=True)
class FleetCall:
    """One Fleet API call of a site's SuperNode."""

    id: int
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FleetReply:
    """The SuperLink's reply to call `id`: its HTTP status, content type and body."""

    id: int
    status: int
    body: bytes
    content_type: str = "application/protobuf"


def forwarded(headers: dict[str, str]) -> dict[str, str]:
    """The request headers worth replaying (lower-cased names)."""
    return {k.lower(): v for k, v in headers.items()
            if k.lower() in FORWARDED_HEADERS or k.lower().startswith(("flwr-", "x-flwr"))}


def _array(body: bytes) -> np.ndarray:
    return np.frombuffer(body, dtype=np.uint8).copy()


def _body(params: Params, key: str) -> bytes:
    value = params.get(key)
    if value is None:
        return b""
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise FleetCallError(f"{key} is not a byte string (uint8 vector) but {array.dtype}{list(array.shape)}")
    return array.tobytes()


def encode_calls(calls: list[FleetCall]) -> tuple[Params, dict[str, Any]]:
    """A site's calls as an answer's params and meta."""
    params = {f"c{c.id}": _array(c.body) for c in calls if c.body}
    meta = {"calls": [{"id": c.id, "path": c.path, "headers": forwarded(c.headers)} for c in calls]}
    return params, meta


def decode_calls(params: Params, meta: dict[str, Any]) -> list[FleetCall]:
    """The calls a site's answer carries; FleetCallError for a malformed one or a path outside the Fleet API."""
    calls = []
    for entry in _entries(meta, "calls"):
        path = entry.get("path")
        if not isinstance(path, str) or not FLEET_PATH.fullmatch(path):
            raise FleetCallError(f"call {entry.get('id')!r} names {path!r}, not a Fleet API path (/v1/fleet/...)")
        headers = entry.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise FleetCallError(f"call {entry['id']} has headers that are not a mapping of strings")
        calls.append(FleetCall(entry["id"], path, _body(params, f"c{entry['id']}"), forwarded(headers)))
    return calls


def encode_replies(replies: list[FleetReply]) -> tuple[Params, dict[str, Any]]:
    """The SuperLink's replies as a task's params and meta."""
    params = {f"c{r.id}": _array(r.body) for r in replies if r.body}
    meta = {"replies": [{"id": r.id, "status": r.status, "content_type": r.content_type} for r in replies]}
    return params, meta


def decode_replies(params: Params, meta: dict[str, Any]) -> list[FleetReply]:
    """The replies a task carries; FleetCallError for a malformed one."""
    replies = []
    for entry in _entries(meta, "replies"):
        status, kind = entry.get("status"), entry.get("content_type", "")
        if not isinstance(status, int) or not isinstance(kind, str):
            raise FleetCallError(f"reply {entry['id']} has no integer status or a content type that is no string")
        replies.append(FleetReply(entry["id"], status, _body(params, f"c{entry['id']}"), kind))
    return replies


def _entries(meta: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = meta.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), int)
                                                for e in entries):
        raise FleetCallError(f"meta {key!r} is not a list of entries with an integer id")
    return entries
