"""The one check on an id or name that comes from a peer (a job id the server sends a site, a job id a client
chooses) before it becomes part of a path: a single folder name, never `..`, `/`, empty or hidden."""

from __future__ import annotations

import re

from flctl.node.errors import NodeError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALLOWED = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class BadName(NodeError):
    """An id or name that cannot be used as a folder name; the message names it and what is allowed."""


def check_path_name(value: str, what: str) -> str:
    """`value` when it is safe as one folder name; BadName (naming `what` and the value) otherwise."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BadName(f"refused the {what} {value!r}: it must be {ALLOWED}")
    return value
