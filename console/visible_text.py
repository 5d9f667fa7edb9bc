"""Text from peers made safe to show on a terminal: every control character written as a visible escape.

A site's log lines, metric names and failure reasons, another admin's job names, a deployed host's output: a
terminal acts on the control sequences in such text (ESC starts one: clear the screen, set the window title,
write the clipboard with OSC 52, hide what follows; C1's CSI does the same on some terminals), and Rich and
Textual pass ESC through (they drop only BEL, BS, VT, FF and CR). Bidirectional overrides and isolates reorder
what is shown ("Trojan Source"). `visible` writes each such character as its escape (`\\x1b`, `\\x9b`,
`\\u202e`), so the text reads as it was sent and the terminal acts on none of it. Like `cat -v`, a backslash
the peer sent is shown as it is: JSON output (`--json`) is where the exact strings are.

Pure and cheap (one `str.translate`): the CLI's terminal module and the console apply it to whatever a peer
could have written, at the point it is shown.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import TypeVar, cast

T = TypeVar("T")

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Arabic letter mark, LRM, RLM, the embeddings and overrides (LRE..RLO, PDF), the isolates (LRI..PDI)."""
_NAMED = {0x0D: "\\r"}


def _escape(code: int) -> str:
    return _NAMED.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_CONTROLS = (*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI)
_LINES = {code: _escape(code) for code in _CONTROLS if code not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """`text` with every control character (C0 but newline and tab, DEL, C1, the bidirectional controls) as its
    escape: for messages and listings that may span lines."""
    return text.translate(_LINES)


def hanging(prefix: str, text: str) -> str:
    """`prefix` (a log line's time and site), then `visible(text)` with every line after its first indented under
    that first line's text: a traceback stays readable, and a peer's `\\n12:00:00 [site-2] ...` is an indented
    continuation, never a line of its own at the margin passing for another site's."""
    return prefix + visible(text).replace("\n", "\n" + " " * len(prefix))


def visible_value(value: T) -> T:
    """`value` with `visible` applied to every string in it: in lists, tuples (named ones too), dict keys and values
    and the init fields of dataclasses (made anew with `dataclasses.replace`), however deep; enum members and
    anything else as they are."""
    if isinstance(value, Enum):  # a StrEnum member (a job's status) is one of our own words: kept as the member
        return value
    if isinstance(value, str):
        return cast(T, visible(value))
    if isinstance(value, list):
        return cast(T, [visible_value(item) for item in value])
    if isinstance(value, tuple):
        items = [visible_value(item) for item in value]
        return cast(T, type(value)(*items) if hasattr(value, "_fields") else tuple(items))  # a named tuple too
    if isinstance(value, dict):
        return cast(T, {visible_value(key): visible_value(item) for key, item in value.items()})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: visible_value(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value
