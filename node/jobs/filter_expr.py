"""A small, safe filter language over a site's columns (a cohort's definition), parsed here and never `eval`ed:

    age >= 65 and diagnosis == "C34"
    (sex == 'F' or sex == "M") and not bmi < 18.5
    diagnosis in ["C34", "C50"] and smoker != 1

Grammar: `expr := term ("or" term)*`, `term := factor ("and" factor)*`, `factor := "not" factor | "(" expr ")" |
comparison`, `comparison := NAME op literal | NAME "in" "[" literal ("," literal)* "]"`, with op one of
== != < <= > >=, a literal a number or a quoted string, a NAME a column (letters, digits, _ and .). A record whose
value is missing matches no comparison (and `not` of one). `parse` checks the text at submit; `mask` evaluates it
over a site's columns (numpy) in the site's script process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?)
                         |(?P<str>"[^"\\]*"|'[^'\\]*')
                         |(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
                         |(?P<name>[A-Za-z_][A-Za-z0-9_.]*))""", re.VERBOSE)
_WORDS = ("and", "or", "not", "in")
MAX_LENGTH = 2000


class ExpressionError(ValueError):
    """The text is not a filter of this grammar (or does not fit the columns it is applied to)."""


Literal = float | str


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class Both:
    op: str  # "and" | "or"
    left: Node
    right: Node


Node = Compare | Not | Both


def _tokens(text: str) -> list[tuple[str, str]]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the filter is {len(text)} characters long; at most {MAX_LENGTH}")
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise ExpressionError(f"cannot read {text[at:].strip()[:20]!r} at character {at + 1}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "name" and value in _WORDS:
            kind = "word"
        tokens.append((kind, value))
        at = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got = self.peek()
        if got[0] != kind or (value is not None and got[1] != value):
            wanted = repr(value) if value else {"name": "a column name", "op": "an operator"}.get(kind, kind)
            raise ExpressionError(f"expected {wanted}, found {_said(got)}")
        self.at += 1
        return got[1]

    def expr(self) -> Node:
        node = self.term()
        while self.peek() == ("word", "or"):
            self.at += 1
            node = Both("or", node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() == ("word", "and"):
            self.at += 1
            node = Both("and", node, self.factor())
        return node

    def factor(self) -> Node:
        if self.peek() == ("word", "not"):
            self.at += 1
            return Not(self.factor())
        if self.peek() == ("op", "("):
            self.at += 1
            node = self.expr()
            self.take("op", ")")
            return node
        column = self.take("name")
        if self.peek() == ("word", "in"):
            self.at += 1
            self.take("op", "[")
            values = [self.literal()]
            while self.peek() == ("op", ","):
                self.at += 1
                values.append(self.literal())
            self.take("op", "]")
            return Compare(column, "in", tuple(values))
        op = self.take("op")
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            raise ExpressionError(f"expected a comparison (==, !=, <, <=, >, >=, in) after {column!r}, found {op!r}")
        return Compare(column, op, (self.literal(),))

    def literal(self) -> Literal:
        kind, value = self.peek()
        self.at += 1
        if kind == "num":
            return float(value)
        if kind == "str":
            return value[1:-1]
        raise ExpressionError(f"expected a number or a quoted string, found {_said((kind, value))}")


def _said(token: tuple[str, str]) -> str:
    return "the end" if token[0] == "end" else repr(token[1])


def parse(text: str) -> Node:
    """The filter `text` as a tree; ExpressionError saying what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the filter is empty; write e.g. age >= 65 and diagnosis == \"C34\"")
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek()[0] != "end":
        raise ExpressionError(f"unexpected {_said(parser.peek())} after a complete filter")
    return node


def columns(node: Node) -> set[str]:
    """The columns a filter reads."""
    if isinstance(node, Compare):
        return {node.column}
    if isinstance(node, Not):
        return columns(node.inner)
    return columns(node.left) | columns(node.right)


def mask(node: Node, data: dict[str, np.ndarray]) -> np.ndarray:
    """Which records match (a bool array); ExpressionError for a column the data lacks or a comparison that does
    not fit it (a number with a categorical column, an order with categories)."""
    import numpy as np

    if isinstance(node, Not):
        inner = node.inner
        negated: np.ndarray = ~mask(inner, data) & _present(inner, data)
        return negated
    if isinstance(node, Both):
        left, right = mask(node.left, data), mask(node.right, data)
        both: np.ndarray = left & right if node.op == "and" else left | right
        return both
    if node.column not in data:
        raise ExpressionError(f"no column {node.column!r} at this site")
    column = data[node.column]
    numeric = column.dtype.kind == "f"
    for value in node.values:
        if numeric != isinstance(value, float):
            kind = "numeric" if numeric else "categorical"
            raise ExpressionError(f"{node.column!r} is {kind}; compare it with a "
                                  f"{'number' if numeric else 'quoted string'}, not {value!r}")
    if not numeric and node.op not in ("==", "!=", "in"):
        raise ExpressionError(f"{node.column!r} is categorical: use ==, != or in, not {node.op}")
    present = ~np.isnan(column) if numeric else np.fromiter((v is not None for v in column), bool, column.size)
    if node.op == "in":
        hit = np.isin(column, np.array(node.values, dtype=column.dtype if numeric else object))
    else:
        hit = _compared(column, node.op, node.values[0])
    matched: np.ndarray = np.asarray(hit, dtype=bool) & present
    return matched


def _present(node: Node, data: dict[str, np.ndarray]) -> np.ndarray:
    """Records with a value in every column `node` reads (`not` of a comparison never matches a missing one)."""
    import numpy as np

    result: np.ndarray | None = None
    for name in columns(node):
        column = data[name]
        here = ~np.isnan(column) if column.dtype.kind == "f" else np.fromiter((v is not None for v in column), bool,
                                                                              column.size)
        result = here if result is None else result & here
    return result if result is not None else np.ones(0, dtype=bool)


def _compared(column: np.ndarray, op: str, value: Literal) -> np.ndarray:
    import operator

    import numpy as np

    ops = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
           ">=": operator.ge}
    with np.errstate(invalid="ignore"):
        return np.asarray(ops[op](column, value), dtype=bool)
