"""Secure-aggregation payloads as params: opaque tensors plus one header tensor (JSON) that says what they are.

So they travel, are checkpointed and resumed like any model (safetensors, chunked streaming): a task, a result and a
saved round hold the same shape of thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from flctl.node.errors import NodeError
from flctl.node.jobs.tasks import Params
from flctl.node.secagg import HEADER


class SecAggError(NodeError):
    """Secure aggregation cannot go on at a site or for a site's answer (no key, another key, a wrong round, a
    damaged payload): that site's part fails with this reason; nothing is sent in clear instead."""


def pack(header: Mapping[str, Any], tensors: Params) -> Params:
    """`tensors` with `header` as the HEADER tensor."""
    raw = json.dumps(dict(header), sort_keys=True).encode()
    return {HEADER: np.frombuffer(raw, np.uint8).copy(), **tensors}


def is_secure(params: Mapping[str, Any]) -> bool:
    """Whether `params` are a secure-aggregation payload (not a plain model)."""
    return HEADER in params


def header_of(params: Mapping[str, np.ndarray], whose: str) -> dict[str, Any]:
    """The header of a payload; SecAggError naming `whose` payload when it has none or it cannot be read."""
    raw = params.get(HEADER)
    if raw is None:
        raise SecAggError(f"{whose} params are not a secure-aggregation payload (no {HEADER} tensor)")
    try:
        header = json.loads(np.asarray(raw, np.uint8).tobytes())
    except ValueError as exc:
        raise SecAggError(f"{whose} {HEADER} is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SecAggError(f"{whose} {HEADER} is not a JSON object")
    return header


def field(header: Mapping[str, Any], name: str, kind: type, whose: str) -> Any:
    """`header[name]`, which must be a `kind`; SecAggError naming the field otherwise."""
    value = header.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SecAggError(f"{whose} {HEADER} field '{name}' is {value!r}, not a {kind.__name__}")
    return value
