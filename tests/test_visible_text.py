"""flctl.console.visible_text: every control character a terminal could act on is written as its escape, printable
text (any script, emoji, box drawing) is left as it is, and a peer's newline in a log line is an indented
continuation, never a line at the margin."""

from __future__ import annotations

import dataclasses
from collections import namedtuple

import pytest

from flctl.console.visible_text import hanging, visible, visible_value
from flctl.node.jobs.job_status import JobStatus


def reference(text: str) -> str:
    """The rule written out character by character: C0 but newline and tab, DEL, C1 and the bidirectional controls
    as their escapes; \\r by name."""
    bidi = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    out = []
    for char in text:
        code = ord(char)
        if char in "\n\t":
            out.append(char)
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in bidi:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


EVERY_CONTROL = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F,
                                  *range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


@pytest.mark.parametrize("text", [
    "plain text, nothing to do",
    "boom\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[8mhidden\x9b31m",   # clipboard write, clear, hide, C1 CSI
    "evil\u202egnp.exe and \u2066isolated\u2069",                # Trojan Source reordering
    "two\nlines\twith a tab\r and a carriage return",
    "héllo 日本語 ✓ 🙂 ─┼─ \u00a0non-breaking and \u00ad soft hyphen",  # printable: untouched
    EVERY_CONTROL,
])
def test_visible_matches_the_rule_character_by_character(text: str) -> None:
    assert visible(text) == reference(text)


def test_no_control_character_survives_and_printable_text_is_untouched() -> None:
    shown = visible(EVERY_CONTROL).replace("\n", "").replace("\t", "")
    assert shown.isascii() and shown.isprintable()
    assert visible("日本語 ✓ 🙂") == "日本語 ✓ 🙂"
    assert visible("a\nb\tc") == "a\nb\tc"


def test_a_peers_newline_is_an_indented_continuation() -> None:
    """A traceback reads as lines; a forged `[site-2]` line is indented under the text, not at the margin."""
    assert hanging("12:00:00 [site-1] ", "boom\x1b[2J\n12:00:00 [site-2] forged") == \
        "12:00:00 [site-1] boom\\x1b[2J\n" + " " * 18 + "12:00:00 [site-2] forged"
    assert hanging("", "a\nb") == "a\nb" and hanging("> ", "one line") == "> one line"


@dataclasses.dataclass(frozen=True)
class Inner:
    name: str
    values: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Outer:
    title: str
    inner: list[Inner]
    pair: tuple[str, int]
    count: int
    computed: str = dataclasses.field(init=False, default="\x1b[0m")  # not an init field: left as it is


def test_visible_value_reaches_every_string_however_deep() -> None:
    Point = namedtuple("Point", "x y")
    value = Outer("t\x1b[2J", [Inner("n\x9b", {"loss\x1b[8m": 1.0})], ("p\x07", 3), 7)
    shown = visible_value(value)
    assert shown == Outer("t\\x1b[2J", [Inner("n\\x9b", {"loss\\x1b[8m": 1.0})], ("p\\x07", 3), 7)
    assert value.title == "t\x1b[2J"  # the original is not changed
    assert visible_value(Point("a\x1b", 1)) == Point("a\\x1b", 1) and type(visible_value(Point("", 1))) is Point
    assert visible_value(3.5) == 3.5 and visible_value(None) is None
    assert visible_value([JobStatus.FAILED])[0] is JobStatus.FAILED  # our own words stay members
