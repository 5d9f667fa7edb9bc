"""Which Flower node a site may speak for: a site's SuperNode gets its node id from the SuperLink (the reply to its
RegisterNode or ActivateNode call) and every later Fleet API call names it; the server keeps who got which id and
refuses a call that names a node id another site got, or none it got, so one site cannot pull another's messages or
push as it. Pure: reads the few protobuf fields it needs from the bytes (wire format; flctl never imports flwr).

The fields, from flwr 1.42's protos: RegisterNode/ActivateNode replies carry `node_id` (field 1, uint64);
DeactivateNode/UnregisterNode requests carry `node_id` (field 1); every other Fleet request carries `node`
(field 1, a Node message whose field 1 is `node_id`). A method this table does not know is refused (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterator

from flctl.node.flower.fleet_calls import FleetCall, FleetReply

GIVES_ID = frozenset({"register-node", "activate-node"})
NAMES_ID = frozenset({"deactivate-node", "unregister-node"})
NAMES_NODE = frozenset({"send-node-heartbeat", "pull-messages", "push-messages", "get-run", "get-fab", "push-object",
                        "pull-object", "confirm-message-received"})


class WireError(ValueError):
    """Bytes that are not the protobuf message expected."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("a varint runs past the message")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a protobuf message: varints as int, length-delimited as bytes; fixed
    fields skipped."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif kind == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise WireError("a field runs past the message")
            yield number, data[pos:pos + size]
            pos += size
        elif kind in (1, 5):
            pos += 8 if kind == 1 else 4
        else:
            raise WireError(f"wire type {kind} is not used by Flower's messages")


def _field_int(data: bytes, number: int) -> int:
    found = [v for n, v in fields(data) if n == number and isinstance(v, int)]
    return found[-1] if found else 0


def _field_bytes(data: bytes, number: int) -> bytes:
    found = [v for n, v in fields(data) if n == number and isinstance(v, bytes)]
    return found[-1] if found else b""


def method_of(call: FleetCall) -> str:
    return call.path.rsplit("/", 1)[-1]


class NodeBinding:
    """The node ids each site's SuperNode was given, and the site each id belongs to."""

    def __init__(self) -> None:
        self._site_of: dict[int, str] = {}

    def check_call(self, site: str, call: FleetCall) -> str:
        """Why `site` may not make `call` ('' when it may)."""
        method = method_of(call)
        if method in GIVES_ID:
            return ""
        try:
            if method in NAMES_ID:
                node_id = _field_int(call.body, 1)
            elif method in NAMES_NODE:
                node_id = _field_int(_field_bytes(call.body, 1), 1)
            else:
                return f"flctl does not relay the Fleet API method {method!r} (it knows flwr 1.42's)"
        except WireError as exc:
            return f"a malformed {method} request ({exc})"
        owner = self._site_of.get(node_id)
        if owner != site:
            return f"{method} names Flower node {node_id}, which is not {site}'s" + (
                f" but {owner}'s" if owner else "")
        return ""

    def check_reply(self, site: str, call: FleetCall, reply: FleetReply) -> str:
        """Take the node id a RegisterNode/ActivateNode reply gives `site`; why it may not have it ('' when it may)."""
        if method_of(call) not in GIVES_ID or reply.status != 200:
            return ""
        try:
            node_id = _field_int(reply.body, 1)
        except WireError as exc:
            return f"the SuperLink's {method_of(call)} reply is malformed ({exc})"
        owner = self._site_of.setdefault(node_id, site)
        return "" if owner == site else f"Flower node {node_id} is {owner}'s, not {site}'s"
