"""Read a YAML file into plain data plus the line of every key, so errors can name lines.

PyYAML silently keeps the last of two equal keys; here a duplicate key is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flctl.provisioner.errors import InputError, Problem

Loc = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it (ten times faster), else the pure-Python one; both give marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlDocument:
    """Parsed data and where each part of it came from (1-based lines)."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest enclosing part when `loc` itself is absent."""
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]


def format_loc(loc: Loc) -> str:
    """`("sites", 1, "name")` -> `sites[1].name`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: Path, max_bytes: int = 16 * 1024 * 1024) -> YamlDocument:
    """Parse `path`; raise InputError naming the line for unreadable or malformed YAML."""
    shown = str(path)
    try:
        if path.stat().st_size > max_bytes:
            raise InputError([Problem(shown, None, "", f"file is larger than {max_bytes} bytes")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem(shown, None, "", "no such file")]) from None
    except IsADirectoryError:
        raise InputError([Problem(shown, None, "", "is a folder, not a YAML file")]) from None
    except UnicodeDecodeError:
        raise InputError([Problem(shown, None, "", "is not UTF-8 text")]) from None
    except OSError as exc:
        raise InputError([Problem(shown, None, "", f"cannot be read ({exc.strerror})")]) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> YamlDocument:
    """Parse YAML text; `shown` names it in error messages."""
    try:
        loader = _LOADER(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters before parsing starts
        raise InputError([Problem(shown, None, "", f"malformed YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise InputError([syntax_problem(exc, shown)]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(shown, None, "", f"malformed YAML: {exc}")]) from None
    finally:
        if hasattr(loader, "dispose"):
            loader.dispose()
    doc = YamlDocument(shown, None)
    if node is None:
        return doc
    problems: list[Problem] = []
    try:
        doc.data = _convert(loader, node, (), doc, problems)
    except yaml.MarkedYAMLError as exc:  # e.g. a tag no safe constructor knows
        raise InputError([syntax_problem(exc, shown)]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(shown, None, "", f"malformed YAML: {exc}")]) from None
    if problems:
        raise InputError(problems)
    return doc


# Where the parser met an unclosed bracket or quote, the mistake is where it opened, not where the parser
# gave up (often the next line); what closes each.
_OPENED = {"while parsing a flow mapping": "'}'", "while parsing a flow sequence": "']'",
           "while scanning a quoted scalar": "closing quote"}


def syntax_problem(exc: yaml.MarkedYAMLError, shown: str) -> Problem:
    """The parser's own words, both of its places, and the line of the mistake (an unclosed `{` at its `{`)."""
    def at(mark: Any) -> str:
        return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""

    context, problem = exc.context, exc.problem
    words = [f"{context}{at(exc.context_mark)}"] if context else []
    words.append(f"{problem or 'malformed YAML'}{at(exc.problem_mark)}")
    text = "malformed YAML: " + ": ".join(words)
    mark = exc.problem_mark or exc.context_mark
    closer = _OPENED.get(context or "")
    if closer and exc.context_mark is not None:
        mark = exc.context_mark
        text += f"; is a {closer} missing on line {mark.line + 1}?"
    return Problem(shown, mark.line + 1 if mark is not None else None, "", text)


def _convert(
    loader: Any, node: yaml.Node, loc: Loc, doc: YamlDocument, problems: list[Problem]
) -> Any:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(Problem(doc.path, key_node.start_mark.line + 1, format_loc(loc),
                                        "keys must be plain scalars"))
                continue
            child = (*loc, str(key))
            if key in out:
                problems.append(Problem(doc.path, key_node.start_mark.line + 1, format_loc(child),
                                        f"duplicate key (first given on line {doc.lines[child]})"))
                continue
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(loader, value_node, child, doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*loc, i), doc, problems) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
